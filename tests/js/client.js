#!/usr/bin/env node
// A small kafkajs client for the Rust end-to-end tests: a second Kafka client implementation,
// pure JavaScript, next to librdkafka.
//
// Connection settings come from the environment:
//   KAFKA_BOOTSTRAP   host:port[,host:port...]            (required)
//   KAFKA_USER        SASL user name (SASL/PLAIN when set)
//   KAFKA_PASSWORD    SASL password
//   KAFKA_MECHANISM   plain (default), scram-sha-256 or scram-sha-512
//   KAFKA_CA          PEM CA bundle: connect with TLS, verifying the server against it
//   KAFKA_CERT        PEM client certificate (with KAFKA_KEY): mutual TLS
//   KAFKA_KEY         PEM private key of KAFKA_CERT
//   KAFKA_TOKEN       SASL/OAUTHBEARER with this token (instead of KAFKA_USER)
//
// Commands (one per run):
//   create   TOPIC PARTITIONS        create a topic                  -> {"created": bool}
//   produce  TOPIC COUNT PREFIX      COUNT records to partition 0,
//                                    keys PREFIX-i, values PREFIX:i   -> {"offsets": [..]}
//   consume  TOPIC GROUP COUNT       join GROUP, read TOPIC from the
//                                    beginning until COUNT records    -> {"records": [..]}
//   topics                           list the topics                 -> {"topics": [..]}
//   metadata TOPIC                   metadata of one topic (never
//                                    creates it)                     -> {"topics": [..]}
//   acl-create JSON                  create the ACL bindings of the
//                                    JSON array (kafkajs' names,
//                                    Kafka's numeric codes)          -> {"created": true}
//   acl-describe JSON                describe with the JSON filter   -> {"resources": [..]}
//   acl-delete JSON                  delete with the JSON array of
//                                    filters                         -> {"filterResponses": [..]}
//
// The answer is one JSON line on stdout. A failure prints {"error": {"type", "message"}} on
// stdout and exits with status 2, so the caller can assert which error it was. kafkajs' own
// logs go to stderr.
'use strict'

const fs = require('fs')
const { Kafka, Partitioners, logLevel } = require('kafkajs')

function usage() {
  process.stderr.write('usage: client.js create|produce|consume|topics|metadata|acl-create|acl-describe|acl-delete ARGS...\n')
  process.exit(64)
}

function kafka() {
  const bootstrap = process.env.KAFKA_BOOTSTRAP
  if (!bootstrap) usage()
  const user = process.env.KAFKA_USER
  const token = process.env.KAFKA_TOKEN
  const sasl = token
    ? { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: token }) }
    : user
      ? {
          mechanism: (process.env.KAFKA_MECHANISM || 'plain').toLowerCase(),
          username: user,
          password: process.env.KAFKA_PASSWORD || '',
        }
      : undefined
  const ca = process.env.KAFKA_CA
  const cert = process.env.KAFKA_CERT
  const key = process.env.KAFKA_KEY
  const read = (f) => fs.readFileSync(f, 'utf8')
  const ssl =
    ca || cert
      ? {
          ca: ca ? [read(ca)] : undefined,
          cert: cert ? read(cert) : undefined,
          key: key ? read(key) : undefined,
        }
      : undefined
  return new Kafka({
    clientId: 'kafkajs-test',
    brokers: bootstrap.split(','),
    sasl,
    ssl,
    connectionTimeout: 5000,
    authenticationTimeout: 5000,
    requestTimeout: 15000,
    // Few, quick retries: a test waits for an answer, not for kafkajs' default back-off.
    retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1000 },
    logLevel: logLevel.WARN,
    // Logs never mix with the JSON answer on stdout; credentials are not part of them.
    logCreator: () => ({ level, log }) => {
      process.stderr.write(`kafkajs ${level}: ${log.message} ${log.error || ''}\n`)
    },
  })
}

async function withAdmin(k, f) {
  const admin = k.admin({ retry: { retries: 1 } })
  await admin.connect()
  try {
    return await f(admin)
  } finally {
    await admin.disconnect()
  }
}

async function create(k, topic, partitions) {
  const created = await withAdmin(k, (admin) =>
    admin.createTopics({
      topics: [{ topic, numPartitions: Number(partitions), replicationFactor: 1 }],
      waitForLeaders: true,
    })
  )
  return { created }
}

async function produce(k, topic, count, prefix) {
  const producer = k.producer({
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  try {
    const offsets = []
    // One record per request keeps the offsets one apart and in order.
    for (let i = 0; i < Number(count); i++) {
      const [meta] = await producer.send({
        topic,
        acks: -1,
        messages: [{ key: `${prefix}-${i}`, value: `${prefix}:${i}`, partition: 0 }],
      })
      if (meta.errorCode !== 0) throw new Error(`produce error code ${meta.errorCode}`)
      offsets.push(Number(meta.baseOffset))
    }
    return { offsets }
  } finally {
    await producer.disconnect()
  }
}

async function consume(k, topic, group, count) {
  const want = Number(count)
  const consumer = k.consumer({
    groupId: group,
    // tansu answers a join after about half the session timeout: keep it short.
    sessionTimeout: 6000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 10000,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 200,
  })
  await consumer.connect()
  try {
    const records = []
    let done
    const finished = new Promise((resolve) => (done = resolve))
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic: t, partition, message }) => {
        if (records.length >= want) return
        records.push({
          topic: t,
          partition,
          offset: Number(message.offset),
          key: message.key ? message.key.toString() : null,
          value: message.value ? message.value.toString() : null,
        })
        if (records.length === want) done()
      },
    })
    await finished
    return { records }
  } finally {
    await consumer.disconnect()
  }
}

async function topics(k) {
  const list = await withAdmin(k, (admin) => admin.listTopics())
  return { topics: list.sort() }
}

async function metadata(k, topic) {
  const md = await withAdmin(k, (admin) => admin.fetchTopicMetadata({ topics: [topic] }))
  return {
    topics: md.topics.map((t) => ({ name: t.name, partitions: t.partitions.length })),
  }
}

async function aclCreate(k, json) {
  const created = await withAdmin(k, (admin) => admin.createAcls({ acl: JSON.parse(json) }))
  return { created }
}

async function aclDescribe(k, json) {
  const { resources } = await withAdmin(k, (admin) => admin.describeAcls(JSON.parse(json)))
  return { resources }
}

async function aclDelete(k, json) {
  const { filterResponses } = await withAdmin(k, (admin) =>
    admin.deleteAcls({ filters: JSON.parse(json) })
  )
  return { filterResponses }
}

async function main() {
  const [command, ...args] = process.argv.slice(2)
  const k = kafka()
  switch (command) {
    case 'create':
      if (args.length !== 2) usage()
      return create(k, ...args)
    case 'produce':
      if (args.length !== 3) usage()
      return produce(k, ...args)
    case 'consume':
      if (args.length !== 3) usage()
      return consume(k, ...args)
    case 'topics':
      return topics(k)
    case 'metadata':
      if (args.length !== 1) usage()
      return metadata(k, ...args)
    case 'acl-create':
      if (args.length !== 1) usage()
      return aclCreate(k, ...args)
    case 'acl-describe':
      if (args.length !== 1) usage()
      return aclDescribe(k, ...args)
    case 'acl-delete':
      if (args.length !== 1) usage()
      return aclDelete(k, ...args)
    default:
      usage()
  }
}

main().then(
  (answer) => {
    process.stdout.write(JSON.stringify(answer) + '\n')
    process.exit(0)
  },
  (e) => {
    // kafkajs wraps the broker's error (retries exceeded, non-retriable): the first wrapped
    // error with a `type` names the Kafka error code.
    let inner = e
    while (inner && !inner.type && (inner.originalError || inner.cause)) {
      inner = inner.originalError || inner.cause
    }
    const type = (inner && inner.type) || (e && e.name) || 'Error'
    process.stdout.write(JSON.stringify({ error: { type, message: String(e && e.message) } }) + '\n')
    process.exit(2)
  }
)
