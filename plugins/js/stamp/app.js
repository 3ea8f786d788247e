// js-stamp: a Sluice interceptor written in JavaScript.
//
// on-produce appends the header `x-stamp: <value>` to every record, `value` coming from the
// interceptor's JSON configuration `{"value": "..."}`, and adds the number of records stamped
// to the plugin counter `stamped_records`.
//
// Built with componentize-js (StarlingMonkey), see package.json and README.md. Conventions of
// the JS bindings: the world's exports are plain functions (camelCase); imports come from
// `sluice:interceptor/<interface>@0.1.0`; resources are objects with camelCase methods; `u64`
// is a BigInt; `list<u8>` is a Uint8Array; an `option` is the value or `undefined`; a
// `result<_, E>` returns normally for ok and throws E for err.
import { counterAdd } from 'sluice:interceptor/host@0.1.0';

let stamp = null; // Uint8Array of the configured value, once configured

// UTF-8 encoding by hand: works on every JS engine (QuickJS has no TextEncoder).
function utf8(text) {
  const out = [];
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (c < 0x80) {
      out.push(c);
    } else if (c < 0x800) {
      out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    } else {
      out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    }
  }
  return new Uint8Array(out);
}

export function describe() {
  return {
    hooks: { request: false, response: false, produce: true, fetch: false },
    apiKeys: [],
  };
}

export function configure(config) {
  let parsed;
  try {
    parsed = JSON.parse(config === '' ? '{}' : config);
  } catch (e) {
    throw `js-stamp: config is not valid JSON: ${e.message}`;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw 'js-stamp: config must be a JSON object like {"value": "..."}';
  }
  for (const key of Object.keys(parsed)) {
    if (key !== 'value') {
      throw `js-stamp: unknown config field \`${key}\` (the only field is \`value\`)`;
    }
  }
  if (typeof parsed.value !== 'string') {
    throw 'js-stamp: missing or non-string `value`: expected {"value": "..."}';
  }
  stamp = utf8(parsed.value);
}

export function onRequest(_ctx, _body) {
  return { tag: 'forward' };
}

export function onResponse(_ctx, _body) {
  return { tag: 'forward' };
}

export function onProduce(_ctx, records) {
  if (stamp === null) {
    throw new Error('js-stamp: on-produce called before configure');
  }
  let stamped = 0;
  const partitions = records.partitionCount();
  for (let p = 0; p < partitions; p++) {
    const count = records.recordCount(p);
    for (let r = 0; r < count; r++) {
      records.addHeader(p, r, { key: 'x-stamp', value: stamp });
    }
    stamped += count;
  }
  if (stamped > 0) {
    counterAdd('stamped_records', BigInt(stamped));
  }
}

export function onFetch(_ctx, _records) {}
