/* tls.c - the server's TLS context. */
#include <openssl/err.h>
#include <stdio.h>

#include "imapd/imapd.h"

static void ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
	unsigned long e = ERR_get_error();
	char detail[256] = "";
	if (e != 0)
		ERR_error_string_n(e, detail, sizeof(detail));
	snprintf(err, errlen, "%s %s: %s", what, file, detail);
	ERR_clear_error();
}

SSL_CTX *tls_ctx_new(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		ssl_err(err, errlen, "SSL_CTX_new", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Sessions write in pieces and retry from a moving output buffer. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE |
				 /* a client closing without close_notify is just EOF */
				 SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
		ssl_err(err, errlen, "certificate", cfg->tls_cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1) {
		ssl_err(err, errlen, "private key", cfg->tls_key_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_err(err, errlen, "key does not match certificate", cfg->tls_cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
