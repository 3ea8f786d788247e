// Unit tests of the built component (dist/js-stamp.wasm), run in Node through `jco transpile`
// with fake host imports: the same checks as the Rust plugins' harness tests, on the real
// artifact. `npm test` transpiles first (see package.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { instantiate } from '../dist/transpiled/js-stamp.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** In-memory `records` resource (the host's, as the component sees it). */
class Records {
  constructor(partitions) {
    // partitions: [{ topic, partition, records: [{ key, value, headers, timestamp }] }]
    this.parts = partitions;
  }
  partitionCount() { return this.parts.length; }
  topic(p) { return this.parts[p].topic; }
  partition(p) { return this.parts[p].partition; }
  recordCount(p) { return this.parts[p].records.length; }
  key(p, r) { return this.parts[p].records[r].key; }
  value(p, r) { return this.parts[p].records[r].value; }
  valueSize(p, r) { const v = this.parts[p].records[r].value; return v === undefined ? -1 : v.length; }
  headers(p, r) { return this.parts[p].records[r].headers; }
  timestamp(p, r) { return this.parts[p].records[r].timestamp; }
  get(p, r) { return this.parts[p].records[r]; }
  setKey(p, r, key) { this.parts[p].records[r].key = key; }
  setValue(p, r, value) { this.parts[p].records[r].value = value; }
  setHeaders(p, r, headers) { this.parts[p].records[r].headers = headers; }
  addHeader(p, r, header) { this.parts[p].records[r].headers.push(header); }
  remove(p, r) { this.parts[p].records[r].removed = true; }
  append(p, rec) { this.parts[p].records.push(rec); }
  reject(p, error) { this.parts[p].rejected = error; }
}

class Message {
  constructor(bytes) { this.b = bytes; }
  size() { return this.b.length; }
  read(offset, len) { return this.b.slice(offset, offset + len); }
  bytes() { return this.b; }
}

async function load() {
  const host = { counters: new Map(), logs: [] };
  const imports = {
    'sluice:interceptor/host': {
      log: (level, message) => host.logs.push([level, message]),
      nowMillis: () => BigInt(Date.now()),
      monotonicNanos: () => process.hrtime.bigint(),
      randomBytes: (len) => new Uint8Array(len),
      counterAdd: (name, delta) => host.counters.set(name, (host.counters.get(name) ?? 0n) + delta),
      gaugeSet: () => {},
    },
    'sluice:interceptor/kv': { get: () => undefined, set: () => {}, delete: () => {}, increment: () => 0n },
    'sluice:interceptor/kms': { encrypt: () => { throw 'no kms'; }, decrypt: () => { throw 'no kms'; } },
    'sluice:interceptor/publish': { produce: () => {} },
    'sluice:interceptor/types': { Records, Message },
  };
  const dir = new URL('../dist/transpiled/', import.meta.url);
  const plugin = await instantiate(
    async (path) => WebAssembly.compile(await readFile(new URL(path, dir))),
    imports,
  );
  return { plugin, host };
}

const ctx = {
  interceptor: 'stamp', groups: [], clientAddress: '127.0.0.1:50000',
  apiKey: 0, apiVersion: 9, correlationId: 1,
};

const rec = (value, headers = []) => ({ value: enc.encode(value), headers, timestamp: 0n });

test('describe: produce only, every API key', async () => {
  const { plugin } = await load();
  const caps = plugin.describe();
  assert.deepEqual(
    { ...caps.hooks },
    { request: false, response: false, produce: true, fetch: false },
  );
  assert.equal(caps.apiKeys.length, 0);
});

test('on-produce stamps every record and counts them', async () => {
  const { plugin, host } = await load();
  plugin.configure('{"value": "gw-1 é€😀"}');
  const records = new Records([
    { topic: 'orders', partition: 0, records: [rec('a', [{ key: 'own', value: enc.encode('x') }]), rec('b')] },
    { topic: 'audit', partition: 3, records: [rec('c')] },
    { topic: 'empty', partition: 0, records: [] },
  ]);
  plugin.onProduce(ctx, records);
  const stamps = records.parts.flatMap((p) => p.records.map((r) => r.headers.at(-1)));
  assert.equal(stamps.length, 3);
  for (const h of stamps) {
    assert.equal(h.key, 'x-stamp');
    assert.equal(dec.decode(h.value), 'gw-1 é€😀');
  }
  assert.equal(records.parts[0].records[0].headers[0].key, 'own', 'own headers kept first');
  assert.equal(dec.decode(records.parts[0].records[1].value), 'b', 'values untouched');
  assert.equal(host.counters.get('stamped_records'), 3n);
  assert.ok(records.parts.every((p) => p.rejected === undefined));
});

test('generic hooks forward', async () => {
  const { plugin } = await load();
  plugin.configure('{"value": "v"}');
  assert.deepEqual(plugin.onRequest(ctx, new Message(enc.encode('body'))), { tag: 'forward' });
  assert.deepEqual(plugin.onResponse(ctx, new Message(enc.encode('body'))), { tag: 'forward' });
  plugin.onFetch(ctx, new Records([]));
});

test('configure refuses bad config with a clear message', async () => {
  const { plugin } = await load();
  const refused = (config) => {
    try {
      plugin.configure(config);
    } catch (e) {
      return String(e.payload ?? e.message ?? e);
    }
    assert.fail(`config ${config} was accepted`);
  };
  assert.match(refused('{}'), /missing or non-string `value`/);
  assert.match(refused('{"value": 1}'), /missing or non-string `value`/);
  assert.match(refused('{'), /not valid JSON/);
  assert.match(refused('[]'), /must be a JSON object/);
  assert.match(refused('{"value": "v", "x": 1}'), /unknown config field `x`/);
});
