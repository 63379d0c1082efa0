-- 0001_init.sql - the initial schema: tenants, accounts, mailboxes,
-- messages, tombstones and deduplicated blobs.
--
-- Applied by sql/migrate.c (`imapctl migrate`) inside one transaction, so
-- no statement here may refuse to run in a transaction block (no CREATE
-- INDEX CONCURRENTLY) and the file must not BEGIN or COMMIT itself.
--
-- Keys.  Every row that belongs to an account has account_id as the leading
-- column of its primary key and of every index on it.  That keeps tenants
-- apart in every query plan (a query that forgets the account cannot use an
-- index) and it is the distribution column should the schema ever be spread
-- over several nodes with Citus.  Blobs are deduplicated per tenant, so they
-- are keyed by tenant_id first.
--
-- Numbers.  UIDs and UIDVALIDITY are 32-bit unsigned on the wire (RFC 3501
-- 2.3.1.1) and mod-sequences 63-bit (RFC 7162 section 7: "mod-sequence
-- values are unsigned 63-bit"): all of them are bigint here, never integer.

-- A tenant is one mail domain.  name is the domain in lower case: logins
-- are matched on it exactly, so the canonical form is enforced here rather
-- than trusted to every caller.
CREATE TABLE tenant (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name       text NOT NULL UNIQUE
	           CHECK (name <> '' AND name = lower(name) AND name !~ '[@[:space:]]'),
	created_at timestamptz NOT NULL DEFAULT now()
);

-- login is `user@domain` in lower case; the domain part is the tenant's
-- name (account_create() derives the tenant from it).  password_hash is a
-- crypt(3) string: $y$ (yescrypt, what imapctl writes), or $6$, $5$, $2b$,
-- $2y$ imported from another server; the verifier (crypt_r) reads the
-- algorithm from the prefix.  quota_bytes NULL means no quota.
-- Accounts are not removed by deleting their tenant: ON DELETE RESTRICT, so
-- removing a domain with live accounts takes an explicit decision
-- (`imapctl tenant del --force` deletes the accounts first).
CREATE TABLE account (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id     bigint NOT NULL REFERENCES tenant (id) ON DELETE RESTRICT,
	login         text NOT NULL UNIQUE
	              CHECK (login = lower(login) AND login ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
	password_hash text NOT NULL CHECK (password_hash <> ''),
	state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled')),
	quota_bytes   bigint CHECK (quota_bytes IS NULL OR quota_bytes >= 0),
	created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_tenant_idx ON account (tenant_id);

-- Mailbox ids come from one global sequence rather than a per-account
-- counter: cheap, unique across the installation (a notification subject
-- `<prefix>.<tenant>.<mailbox>` names a mailbox without its account), and
-- never reused, so a message or notification for a deleted mailbox can
-- never be mistaken for one in its successor.
CREATE SEQUENCE mailbox_id_seq AS bigint;

-- UIDVALIDITY must change whenever a mailbox name stops denoting the same
-- UID space (RFC 3501 2.3.1.1): a mailbox deleted and created again under
-- the same name must get a value it never had, or clients would graft
-- their cached UIDs onto new messages.  A global sequence gives every
-- created mailbox a value never handed out before, whatever the name, and
-- strictly ascending as the RFC recommends.  Values are nz-number 32-bit:
-- 4,294,967,295 mailbox creations exhaust it, and it must then fail rather
-- than cycle back to values clients may still hold.
-- It starts at the current Unix time, like Dovecot's and Cyrus's
-- time-based values: a database created afresh (a purged test stack, a
-- rebuilt installation) then still hands out values above those its
-- predecessor gave, so clients caching the old ones resynchronise instead
-- of trusting stale UIDs.  That leaves about 2.4 billion creations.
CREATE SEQUENCE mailbox_uidvalidity_seq AS bigint MINVALUE 1 MAXVALUE 4294967295 NO CYCLE;
SELECT setval('mailbox_uidvalidity_seq', extract(epoch FROM now())::bigint);

-- One row per mailbox, and the serialisation point for all its writers
-- (DESIGN invariant 1): UIDs and mod-sequences are taken from uidnext and
-- highestmodseq with `UPDATE mailbox SET highestmodseq = highestmodseq + 1
-- ... RETURNING` in the same statement as the change, so per mailbox the
-- commit order equals the modseq order.  A SEQUENCE would not do: it is not
-- transactional, and a smaller modseq could commit after a larger one was
-- read, so a client that synced in between would miss that change forever.
--
-- highestmodseq starts at 1: RFC 7162 3.1.1 forbids 0 for a mailbox that
-- supports mod-sequences (0 is what a client sends meaning "never synced").
-- vanished_floor: tombstones with modseq <= vanished_floor have expired
-- (invariant 3).  A QRESYNC or CHANGEDSINCE from below the floor cannot be
-- answered from tombstones and must report every UID below uidnext that is
-- not live as vanished.
-- special_use is one RFC 6154 attribute (or \All / \Flagged for virtual
-- mailboxes a future version may add), NULL for ordinary mailboxes.
-- Names are UTF-8 (RFC 9051; imapd converts modified UTF-7 for IMAP4rev1
-- clients) with `/` as the hierarchy separator.  INBOX is case-insensitive
-- (RFC 3501 5.1): it is stored as exactly 'INBOX', and no other spelling of
-- it may exist, or two rows would answer to one name.
CREATE TABLE mailbox (
	account_id     bigint NOT NULL REFERENCES account (id) ON DELETE CASCADE,
	id             bigint NOT NULL DEFAULT nextval('mailbox_id_seq'),
	name           text NOT NULL
	               CHECK (name <> '' AND name !~ '(^/|/$|//)'
	                      AND (name = 'INBOX' OR upper(name) <> 'INBOX')),
	uidvalidity    bigint NOT NULL DEFAULT nextval('mailbox_uidvalidity_seq')
	               CHECK (uidvalidity BETWEEN 1 AND 4294967295),
	-- The next UID to assign: at most 2^32 once UID 2^32-1 was used, after
	-- which the mailbox can take no more messages (the writer must refuse).
	uidnext        bigint NOT NULL DEFAULT 1 CHECK (uidnext BETWEEN 1 AND 4294967296),
	highestmodseq  bigint NOT NULL DEFAULT 1 CHECK (highestmodseq >= 1),
	vanished_floor bigint NOT NULL DEFAULT 0
	               CHECK (vanished_floor >= 0 AND vanished_floor <= highestmodseq),
	special_use    text CHECK (special_use IN ('\All', '\Archive', '\Drafts', '\Flagged',
	                                           '\Junk', '\Sent', '\Trash', '\Important')),
	created_at     timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, id),
	UNIQUE (account_id, name)
);
ALTER SEQUENCE mailbox_id_seq OWNED BY mailbox.id;
ALTER SEQUENCE mailbox_uidvalidity_seq OWNED BY mailbox.uidvalidity;

-- Subscriptions are names, not references: RFC 3501 6.3.6 lets a client
-- subscribe to a mailbox that does not exist (yet, or any more), and
-- deleting a mailbox does not unsubscribe it.  So no foreign key to mailbox.
CREATE TABLE subscription (
	account_id bigint NOT NULL REFERENCES account (id) ON DELETE CASCADE,
	name       text NOT NULL CHECK (name <> ''),
	PRIMARY KEY (account_id, name)
);

-- Message bytes and what was parsed from them once at delivery, shared by
-- every copy of the same message within a tenant (a mail to a whole
-- company, COPY/MOVE, re-APPENDs).  hash is a digest of the raw message
-- (the writer chooses the algorithm, SHA-256 today; the key is all that
-- matters here).  Dedup stays inside one tenant so that no tenant can learn
-- from timing or errors that another one holds a given message.
--
-- No reference count: a counter would be one more hot row to update on every
-- delivery, copy and expunge (a company-wide mail would serialise all its
-- recipients on it).  Instead storaged's periodic sweep deletes blobs that
-- no message references (via message_blob_idx) and are older than a grace
-- period.  The foreign key from message makes that sweep safe against a
-- delivery that is just reusing the blob: the delivery's insert locks the
-- blob row (FOR KEY SHARE) and the sweep's DELETE then fails or waits
-- instead of removing a blob about to be referenced.
-- (With Citus the two tables would be distributed by different keys and that
-- foreign key could not be kept; the sweep would then need its own guard.)
--
-- envelope, bodystructure and body are the IMAP responses pre-rendered at
-- store time (FETCH ENVELOPE, BODYSTRUCTURE, and the non-extensible BODY).
-- parts is the MIME part table (offsets of each part's header and body in
-- data) in the binary layout the shared MIME parser defines; it is opaque
-- to SQL.
CREATE TABLE blob (
	tenant_id     bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
	hash          bytea NOT NULL,
	size          bigint NOT NULL CHECK (size >= 0),
	data          bytea NOT NULL,
	envelope      text,
	bodystructure text,
	body          text,
	parts         bytea,
	created_at    timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, hash)
);

-- One row per live message.  uid and modseq come from the mailbox row
-- (invariant 1); modseq is the mod-sequence of the last change to this
-- message (RFC 7162 CHANGEDSINCE compares with it).  flags is a bitmask of
-- the system flags: \Seen 1, \Answered 2, \Flagged 4, \Deleted 8, \Draft 16
-- (\Recent is per session, never stored); keywords holds the rest.
-- tenant_id duplicates the account's tenant so the blob can be found (and
-- referenced) without a join.
CREATE TABLE message (
	account_id   bigint NOT NULL,
	mailbox_id   bigint NOT NULL,
	uid          bigint NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),
	modseq       bigint NOT NULL CHECK (modseq >= 1),
	flags        integer NOT NULL DEFAULT 0 CHECK (flags >= 0 AND flags <= 31),
	keywords     text[] NOT NULL DEFAULT '{}',
	internaldate timestamptz NOT NULL DEFAULT now(),
	size         bigint NOT NULL CHECK (size >= 0),
	blob_hash    bytea NOT NULL,
	tenant_id    bigint NOT NULL,
	PRIMARY KEY (account_id, mailbox_id, uid),
	FOREIGN KEY (account_id, mailbox_id) REFERENCES mailbox (account_id, id) ON DELETE CASCADE,
	FOREIGN KEY (tenant_id, blob_hash) REFERENCES blob (tenant_id, hash)
);
-- The delta query of CONDSTORE/QRESYNC (changed since modseq n) must cost
-- what changed, not the mailbox size.
CREATE INDEX message_modseq_idx ON message (account_id, mailbox_id, modseq);
-- For the blob sweep (and the foreign key check when a blob is deleted).
CREATE INDEX message_blob_idx ON message (tenant_id, blob_hash);
-- STATUS (UNSEEN) is asked for every folder, often; EXPUNGE looks for
-- \Deleted.  Both sets are usually a small part of a large mailbox, so
-- partial indexes keep those queries off a full scan of the mailbox.
-- (Every flag change moves modseq, so flag updates are never HOT updates
-- anyway: these add an index insertion, not a lost optimisation.)
CREATE INDEX message_unseen_idx ON message (account_id, mailbox_id, uid) WHERE flags & 1 = 0;
CREATE INDEX message_deleted_idx ON message (account_id, mailbox_id, uid) WHERE flags & 8 <> 0;

-- Tombstones (invariant 3).  An expunge deletes the message row and inserts
-- its tombstone with a new modseq in the same transaction, so
-- `VANISHED (EARLIER)` and `UID FETCH ... (CHANGEDSINCE n VANISHED)` find
-- every UID gone since n by the modseq index, including the one that held
-- the highest UID (resolve `*` against tombstones too).  Expiry deletes old
-- tombstones and raises mailbox.vanished_floor in the same transaction.
-- A UID is never reused in a mailbox, so (mailbox, uid) is unique here too.
CREATE TABLE expunged (
	account_id bigint NOT NULL,
	mailbox_id bigint NOT NULL,
	uid        bigint NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),
	modseq     bigint NOT NULL CHECK (modseq >= 1),
	PRIMARY KEY (account_id, mailbox_id, uid),
	FOREIGN KEY (account_id, mailbox_id) REFERENCES mailbox (account_id, id) ON DELETE CASCADE
);
CREATE INDEX expunged_modseq_idx ON expunged (account_id, mailbox_id, modseq);

-- account_create(login, password_hash) -> account id.
-- Creates the account in the tenant named by the login's domain part (an
-- error if there is none: tenants are created deliberately, never as a side
-- effect of a typo), with INBOX and the RFC 6154 special-use mailboxes
-- clients look for, all subscribed, in one transaction, so no account is
-- ever visible without its INBOX.
-- Errors: SQLSTATE 22023 for a malformed login, P0002 for an unknown domain,
-- 23505 (unique_violation) if the login exists.
CREATE FUNCTION account_create(p_login text, p_password_hash text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v_login   text := lower(p_login);
	v_tenant  bigint;
	v_account bigint;
BEGIN
	IF v_login IS NULL OR v_login !~ '^[^@[:space:]]+@[^@[:space:]]+$' THEN
		RAISE EXCEPTION 'invalid login "%": expected user@domain', p_login
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_password_hash IS NULL OR p_password_hash = '' THEN
		RAISE EXCEPTION 'empty password hash' USING ERRCODE = 'invalid_parameter_value';
	END IF;

	SELECT id INTO v_tenant FROM tenant WHERE name = split_part(v_login, '@', 2);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no tenant for domain "%"', split_part(v_login, '@', 2)
			USING ERRCODE = 'no_data_found';
	END IF;

	INSERT INTO account (tenant_id, login, password_hash)
	VALUES (v_tenant, v_login, p_password_hash)
	RETURNING id INTO v_account;

	INSERT INTO mailbox (account_id, name, special_use)
	VALUES (v_account, 'INBOX',   NULL),
	       (v_account, 'Sent',    '\Sent'),
	       (v_account, 'Drafts',  '\Drafts'),
	       (v_account, 'Trash',   '\Trash'),
	       (v_account, 'Junk',    '\Junk'),
	       (v_account, 'Archive', '\Archive');

	INSERT INTO subscription (account_id, name)
	SELECT v_account, name FROM mailbox WHERE account_id = v_account;

	RETURN v_account;
END
$$;
