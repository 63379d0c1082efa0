// Interop check with imapflow and RFC 7162 QRESYNC, driven by
// tests/test_interop.py in two phases:
//
//   node imapflow_qresync.mjs HOST PORT USER PASS phase1
//     connects with qresync enabled, opens INBOX, fetches 1:* (UID FLAGS
//     MODSEQ) and prints its cache {uidValidity, highestModseq, messages:
//     {uid: flags}} as JSON.
//
//   node imapflow_qresync.mjs HOST PORT USER PASS phase2 STATEFILE
//     reconnects with the cache read from STATEFILE, opens INBOX with
//     SELECT (QRESYNC (uidvalidity modseq)), applies the 'expunge' (VANISHED)
//     and 'flags' events it receives to the cache, fetches the messages
//     above its old highest UID, and prints the resulting cache. As a
//     second, independent path it then rebuilds the cache from the phase 1
//     state with UID FETCH 1:* (FLAGS) (CHANGEDSINCE n VANISHED).
//
// Both phases also print the protocol lines imapflow logged (client
// commands and server responses), so the test can check that QRESYNC was
// really used and the cache was not simply refetched.
import fs from 'node:fs';
import { ImapFlow } from 'imapflow';

const [host, port, user, pass, phase, stateFile] = process.argv.slice(2);

const proto = [];
const keep = (entry) => {
  if (entry && typeof entry === 'object' && (entry.src === 'c' || entry.src === 's') && typeof entry.msg === 'string') {
    proto.push((entry.src === 'c' ? 'C: ' : 'S: ') + entry.msg);
  }
};
const logger = {
  trace: keep, debug: keep, info: keep, warn: keep,
  error: (e) => { keep(e); if (e && e.err) process.stderr.write(`imapflow error: ${e.err.message || e.err}\n`); },
  fatal: keep,
};

const normFlags = (flags) => [...flags].filter((f) => f !== '\\Recent').sort();
const maxUid = (messages) => Object.keys(messages).reduce((m, u) => Math.max(m, Number(u)), 0);

const client = new ImapFlow({
  host, port: Number(port), secure: true, auth: { user, pass },
  tls: { rejectUnauthorized: false }, logger, qresync: true,
});

// Events are recorded from connect on; each phase says which ones it applies.
let events = [];
client.on('expunge', (e) => events.push({ type: 'expunge', uid: e.uid ?? null, seq: e.seq ?? null, earlier: !!e.earlier, vanished: !!e.vanished }));
client.on('flags', (e) => events.push({ type: 'flags', uid: e.uid ?? null, seq: e.seq ?? null, modseq: e.modseq ? String(e.modseq) : null, flags: normFlags(e.flags) }));

const out = { phase };
await client.connect();
out.enabled = [...client.enabled].sort();

if (phase === 'phase1') {
  const mb = await client.mailboxOpen('INBOX');
  const messages = {};
  for await (const m of client.fetch('1:*', { uid: true, flags: true }, { uid: true })) {
    messages[m.uid] = normFlags(m.flags);
  }
  out.uidValidity = String(mb.uidValidity);
  // Fetching with CONDSTORE enabled keeps mailbox.highestModseq current.
  out.highestModseq = String(client.mailbox.highestModseq);
  out.messages = messages;
} else if (phase === 'phase2') {
  const state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
  const oldMax = maxUid(state.messages);

  // --- path 1: SELECT INBOX (QRESYNC (uidvalidity modseq)) ---
  events = [];
  const mb = await client.mailboxOpen('INBOX', { uidValidity: BigInt(state.uidValidity), changedSince: BigInt(state.highestModseq) });
  out.qresync = !!mb.qresync;
  out.uidValidity = String(mb.uidValidity);
  out.selectEvents = events;
  events = [];
  const cache = structuredClone(state.messages);
  for (const e of out.selectEvents) {
    if (e.type === 'expunge') {
      if (e.uid === null) throw new Error('expunge event without a UID: not a VANISHED');
      delete cache[e.uid];
    } else if (e.type === 'flags') {
      if (e.uid === null) throw new Error('flags event without a UID');
      cache[e.uid] = e.flags;
    }
  }
  // New messages: everything above the old highest UID ("N:*" always
  // includes the highest UID, so filter).
  out.newFetched = [];
  for await (const m of client.fetch(`${oldMax + 1}:*`, { uid: true, flags: true }, { uid: true })) {
    if (m.uid > oldMax) {
      cache[m.uid] = normFlags(m.flags);
      out.newFetched.push(m.uid);
    }
  }
  out.afterNewFetchEvents = events;
  out.messages = cache;
  out.highestModseq = String(client.mailbox.highestModseq);

  // --- path 2: UID FETCH 1:* (FLAGS) (CHANGEDSINCE n VANISHED) ---
  events = [];
  const cache2 = structuredClone(state.messages);
  const changed = [];
  for await (const m of client.fetch('1:*', { uid: true, flags: true }, { uid: true, changedSince: BigInt(state.highestModseq) })) {
    changed.push(m.uid);
    cache2[m.uid] = normFlags(m.flags);
  }
  // The VANISHED (EARLIER) of this command comes before its FETCHes and is
  // reported as 'expunge' events with earlier = true.
  for (const e of events) {
    if (e.type === 'expunge') {
      if (e.uid === null) throw new Error('expunge event without a UID: not a VANISHED');
      delete cache2[e.uid];
    }
  }
  out.changedSinceEvents = events;
  out.changedSinceFetched = changed;
  out.messages2 = cache2;
  out.highestModseq2 = String(client.mailbox.highestModseq);
} else {
  throw new Error(`unknown phase ${phase}`);
}

await client.logout();
out.proto = proto;
console.log(JSON.stringify(out));
