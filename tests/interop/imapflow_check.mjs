// Interop check with imapflow (a real IMAP client library used by mail
// apps): creates folders, appends, fetches bodies and structures, searches,
// moves and deletes, and prints what it saw as JSON for tests/test_interop.py.
import { ImapFlow } from 'imapflow';

const [host, port, user, pass] = process.argv.slice(2);
const raw = [
  'From: Interop Tester <tester@example.com>',
  'To: alice@example.com',
  'Subject: interop check',
  'Date: Tue, 1 Mar 2022 10:00:00 +0000',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="XYZ"',
  '',
  '--XYZ',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'plain part',
  '--XYZ',
  'Content-Type: application/octet-stream; name="a.bin"',
  'Content-Transfer-Encoding: base64',
  'Content-Disposition: attachment; filename="a.bin"',
  '',
  'AAECAwQ=',
  '--XYZ--',
  '',
].join('\r\n');

const client = new ImapFlow({
  host, port: Number(port), secure: true, auth: { user, pass },
  tls: { rejectUnauthorized: false }, logger: false,
});
const out = {};
await client.connect();
await client.mailboxCreate(['Interop', 'Sub']);
out.list = (await client.list()).map((m) => m.path).sort();
const appended = await client.append('Interop/Sub', raw, ['\\Seen']);
out.appendUid = appended.uid;
let lock = await client.getMailboxLock('Interop/Sub');
try {
  const msg = await client.fetchOne('*', { uid: true, flags: true, envelope: true, bodyStructure: true, source: true });
  out.subject = msg.envelope.subject;
  out.from = msg.envelope.from[0].address;
  out.flags = [...msg.flags].sort();
  out.sourceLength = msg.source.length;
  out.rawLength = Buffer.byteLength(raw);
  out.structure = {
    type: msg.bodyStructure.type,
    parts: msg.bodyStructure.childNodes.map((p) => [p.part, p.type, p.encoding || null]),
  };
  const dl = await client.download(String(msg.uid), '2', { uid: true });
  const chunks = [];
  for await (const chunk of dl.content) chunks.push(chunk);
  out.attachment = Buffer.concat(chunks).toString('hex');
  out.search = await client.search({ subject: 'interop' }, { uid: true });
  out.searchNone = await client.search({ subject: 'nothing like this' }, { uid: true });
  await client.messageFlagsAdd({ uid: String(msg.uid) }, ['\\Flagged'], { uid: true });
  const moved = await client.messageMove(String(msg.uid), 'INBOX', { uid: true });
  out.moved = Boolean(moved && moved.uidMap && moved.uidMap.size === 1);
  out.statusAfterMove = (await client.status('Interop/Sub', { messages: true })).messages;
} finally {
  lock.release();
}
lock = await client.getMailboxLock('INBOX');
try {
  const inbox = [];
  for await (const m of client.fetch('1:*', { uid: true, flags: true, envelope: true })) {
    inbox.push({ subject: m.envelope.subject, flags: [...m.flags].sort() });
  }
  out.inbox = inbox;
  await client.messageDelete('1:*');
  out.inboxAfterDelete = client.mailbox.exists;
} finally {
  lock.release();
}
await client.mailboxDelete('Interop/Sub');
await client.logout();
console.log(JSON.stringify(out));
