#!/usr/bin/env node
// kafkajs as a live client of kafkette, driven by integration/test_kafkajs.py.
//
// Usage: node client.js < command.json
// The command is one JSON object on the first line of stdin, {"cmd": ..., "brokers":
// ["127.0.0.1:PORT"], ...}; the result is one JSON object on the last line of stdout.
// kafkajs's own log lines go to stderr (WARN and above), so stdout stays parseable.
// Every command records the (api, version) pairs kafkajs negotiated with the broker,
// from its instrumentation REQUEST events.
//
// Commands (fields beyond cmd/brokers):
//   produce  topic, messages[], compression ("none"|"gzip"), idempotent, acks, perMessage,
//            allowAutoTopicCreation
//   consume  topic, groupId, count, fromBeginning, timeoutMs, maxWaitTimeInMs, commit,
//            maxBytesPerPartition, maxBytes, sessionTimeout, stopOnCrash
//   group    topic, groupId, partitions, perPartition, timeoutMs  (two members, one process)
//   longpoll topic, groupId, maxWaitTimeInMs, timeoutMs
//   admin    ops[]: {op, args[]} run in order on one admin client
//   produceAcrossRestart  topic, first[], second[]  (idempotent; waits for a stdin line)
//   produceStream  topic, partition, idempotent, batch, max  (sends until a stdin line;
//            one {"acked": [first, count], "offset": base} line per acknowledged send)
// With "expectError": true a command that throws prints {"error": {...}} instead of failing.
'use strict'

const { Kafka, logLevel, CompressionTypes, AssignerProtocol } = require('kafkajs')

const versions = {}

function track(client) {
  client.on(client.events.REQUEST, ({ payload }) => {
    const set = (versions[payload.apiName] = versions[payload.apiName] || [])
    if (!set.includes(payload.apiVersion)) set.push(payload.apiVersion)
  })
}

function stderrLogCreator() {
  return ({ namespace, label, log }) => {
    const { message, ...rest } = log
    process.stderr.write(`[kafkajs ${label}] ${namespace}: ${message} ${JSON.stringify(rest)}\n`)
  }
}

function makeKafka(cmd) {
  return new Kafka({
    clientId: cmd.clientId || 'kafkette-kafkajs-it',
    brokers: cmd.brokers,
    logLevel: logLevel.WARN,
    logCreator: stderrLogCreator,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 100, retries: cmd.retries === undefined ? 10 : cmd.retries },
    // security tests: { mechanism, username, password } for SASL
    // { ca, cert?, key? } (PEM text): cert and key for mutual TLS
    ssl: cmd.ssl ? Object.assign({ ca: [cmd.ssl.ca], rejectUnauthorized: true },
                                 cmd.ssl.cert ? { cert: cmd.ssl.cert, key: cmd.ssl.key } : {})
                 : undefined,
    sasl: cmd.sasl,
  })
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// Polls cond() (async) until truthy or the deadline; throws with `what` on timeout.
async function waitFor(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs
  let lastErr = null
  for (;;) {
    try {
      const v = await cond()
      if (v) return v
      lastErr = null
    } catch (e) {
      lastErr = e
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
        (lastErr ? ` (last error: ${lastErr.message})` : ''))
    }
    await sleep(50)
  }
}

const str = b => (b === null || b === undefined ? null : Buffer.from(b).toString('utf8'))
const b64 = b => (b === null || b === undefined ? null : Buffer.from(b).toString('base64'))

function toMessage(m) {
  const out = {
    key: m.keyB64 !== undefined ? Buffer.from(m.keyB64, 'base64') : m.key,
    value: m.valueB64 !== undefined ? Buffer.from(m.valueB64, 'base64') : m.value,
  }
  if (m.partition !== undefined) out.partition = m.partition
  if (m.timestamp !== undefined) out.timestamp = String(m.timestamp)
  if (m.headers !== undefined) out.headers = m.headers
  return out
}

function fromMessage(topic, partition, message) {
  const headers = {}
  for (const [k, v] of Object.entries(message.headers || {})) {
    headers[k] = Array.isArray(v) ? v.map(str) : str(v)
  }
  return {
    topic,
    partition,
    offset: Number(message.offset),
    timestamp: Number(message.timestamp),
    key: str(message.key),
    keyB64: b64(message.key),
    value: str(message.value),
    valueB64: b64(message.value),
    headers,
  }
}

function decodeAssignment(buf) {
  if (!buf || buf.length === 0) return {}
  const a = AssignerProtocol.MemberAssignment.decode(buf)
  return a ? a.assignment : {}
}

function jsonable(v) {
  return JSON.parse(JSON.stringify(v, (k, x) => {
    if (x && x.type === 'Buffer' && Array.isArray(x.data)) {
      return Buffer.from(x.data).toString('base64')
    }
    if (typeof x === 'bigint') return x.toString()
    return x
  }))
}

// ------------------------------------------------------------------------- produce

async function produce(cmd) {
  const kafka = makeKafka(cmd)
  const producer = kafka.producer({
    idempotent: !!cmd.idempotent,
    // kafkajs's idempotent producer needs one request in flight: it cannot re-order retries
    maxInFlightRequests: cmd.idempotent ? 1 : undefined,
    allowAutoTopicCreation: !!cmd.allowAutoTopicCreation,
  })
  track(producer)
  await producer.connect()
  try {
    const compression = cmd.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None
    const acks = cmd.acks === undefined ? -1 : cmd.acks
    const messages = cmd.messages.map(toMessage)
    const results = []
    if (cmd.perMessage) {
      for (const m of messages) {
        results.push(...await producer.send({ topic: cmd.topic, messages: [m], compression, acks }))
      }
    } else {
      results.push(...await producer.send({ topic: cmd.topic, messages, compression, acks }))
    }
    return { results: jsonable(results) }
  } finally {
    await producer.disconnect()
  }
}

// One idempotent producer sends `first`, reports {"phase": "first", ...} on a stdout
// line, waits for a line on stdin (the test restarts the broker meanwhile), then sends
// `second` with the same producer id and the next sequence numbers.
async function produceAcrossRestart(cmd) {
  const kafka = makeKafka(cmd)
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1,
    allowAutoTopicCreation: false })
  track(producer)
  await producer.connect()
  try {
    const send = async msgs => {
      const out = []
      for (const m of msgs) {
        out.push(...await producer.send({ topic: cmd.topic, messages: [toMessage(m)], acks: -1 }))
      }
      return jsonable(out)
    }
    const first = await send(cmd.first)
    const line = JSON.stringify({ phase: 'first', results: first }) + '\n'
    await new Promise(resolve => process.stdout.write(line, resolve))
    await nextLine()
    const second = await send(cmd.second)
    return { first, second }
  } finally {
    await producer.disconnect()
  }
}

// Sends `batch` messages "s<seq>" per send, one send at a time, until a line arrives on
// stdin (or `max` messages). Each acknowledged send is reported on its own stdout line
// at once, so the test can time a failover; a send that fails after kafkajs's retries
// is reported as {"failed": [first, count], "error": ...} and the stream goes on.
async function produceStream(cmd) {
  const kafka = makeKafka(cmd)
  const producer = kafka.producer({ idempotent: !!cmd.idempotent,
    maxInFlightRequests: cmd.idempotent ? 1 : undefined, allowAutoTopicCreation: false })
  track(producer)
  await producer.connect()
  let stop = false
  nextLine().then(() => { stop = true }, () => { stop = true })
  const write = obj => new Promise(resolve => process.stdout.write(JSON.stringify(obj) + '\n', resolve))
  const batch = cmd.batch || 1
  let seq = 0
  let acked = 0
  let failed = 0
  try {
    while (!stop && seq < (cmd.max || 1e9)) {
      const first = seq
      const messages = []
      for (let i = 0; i < batch; i++) {
        messages.push({ partition: cmd.partition || 0, value: `s${String(seq).padStart(6, '0')}` })
        seq++
      }
      try {
        const [r] = await producer.send({ topic: cmd.topic, messages, acks: -1 })
        await write({ acked: [first, batch], offset: Number(r.baseOffset) })
        acked += batch
      } catch (e) {
        await write({ failed: [first, batch], error: `${e.name}: ${e.message}` })
        failed += batch
      }
    }
    return { sent: seq, ackedRecords: acked, failedRecords: failed }
  } finally {
    await producer.disconnect()
  }
}

// ------------------------------------------------------------------------- consume

async function consume(cmd) {
  const kafka = makeKafka(cmd)
  const consumer = kafka.consumer({
    groupId: cmd.groupId,
    sessionTimeout: cmd.sessionTimeout || 30000,
    heartbeatInterval: Math.min(1000, Math.floor((cmd.sessionTimeout || 30000) / 3)),
    // short fetch waits: disconnect() waits for the Fetch in flight to come back
    maxWaitTimeInMs: cmd.maxWaitTimeInMs || 100,
    maxBytesPerPartition: cmd.maxBytesPerPartition,
    maxBytes: cmd.maxBytes,
    allowAutoTopicCreation: false,
    // kafkajs reads read_committed unless told otherwise
    readUncommitted: !!cmd.readUncommitted,
  })
  track(consumer)
  const joins = []
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    joins.push({ memberId: payload.memberId, isLeader: payload.isLeader,
      protocol: payload.groupProtocol, assignment: payload.memberAssignment })
  })
  // kafkajs reports errors of its background run loop (e.g. a JoinGroup error) as a
  // CRASH event, not as a rejected promise
  let crash = null
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    crash = { type: payload.error.type || payload.error.name, message: payload.error.message,
      restart: payload.restart }
  })
  const records = []
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [cmd.topic], fromBeginning: cmd.fromBeginning !== false })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        records.push(fromMessage(topic, partition, message))
      },
    })
    let timedOut = false
    try {
      await waitFor(() => records.length >= cmd.count || (cmd.stopOnCrash && crash),
        cmd.timeoutMs || 30000, `${cmd.count} records (have ${records.length})`)
    } catch (e) {
      timedOut = true
    }
    const committed = {}
    if (cmd.commit !== false && records.length > 0) {
      const next = {}
      for (const r of records) next[r.partition] = Math.max(next[r.partition] || 0, r.offset + 1)
      const offsets = Object.entries(next).map(([p, o]) =>
        ({ topic: cmd.topic, partition: Number(p), offset: String(o) }))
      await consumer.commitOffsets(offsets)
      Object.assign(committed, next)
    }
    return { records, joins, committed, timedOut, crash }
  } finally {
    await consumer.disconnect()
  }
}

// ------------------------------------------------------------------------- transactions

// One transactional producer runs cmd.transactions in order: each { messages, commit }
// sends its messages inside producer.transaction() and commits or aborts.
async function transactions(cmd) {
  const kafka = makeKafka(cmd)
  const producer = kafka.producer({ transactionalId: cmd.transactionalId, idempotent: true,
    maxInFlightRequests: 1, allowAutoTopicCreation: false })
  track(producer)
  await producer.connect()
  const done = []
  try {
    for (const t of cmd.transactions) {
      const txn = await producer.transaction()
      const compression = cmd.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None
      if (t.messages.length) {
        await txn.send({ topic: cmd.topic, messages: t.messages.map(toMessage), compression })
      }
      // consume-transform-produce: the group's offsets commit with the transaction
      if (t.sendOffsets) {
        await txn.sendOffsets({ consumerGroupId: t.sendOffsets.groupId, topics: [{
          topic: t.sendOffsets.topic,
          partitions: [{ partition: t.sendOffsets.partition, offset: String(t.sendOffsets.offset) }] }] })
      }
      if (t.commit) await txn.commit(); else await txn.abort()
      done.push(t.commit ? 'committed' : 'aborted')
    }
    return { done }
  } finally {
    await producer.disconnect()
  }
}

// ------------------------------------------------------------------------- group

// Two members of one group in one process. Waits until DescribeGroups shows the group
// Stable with both members holding partitions, then produces perPartition records to
// every partition and consumes them; each member commits what it read.
async function group(cmd) {
  const kafka = makeKafka(cmd)
  const timeoutMs = cmd.timeoutMs || 30000
  const admin = kafka.admin()
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  track(admin)
  track(producer)
  await admin.connect()
  await producer.connect()
  const members = []
  try {
    for (const name of ['a', 'b']) {
      const consumer = kafka.consumer({
        groupId: cmd.groupId, sessionTimeout: 30000, heartbeatInterval: 500,
        rebalanceTimeout: 30000, maxWaitTimeInMs: 100, allowAutoTopicCreation: false,
      })
      track(consumer)
      const m = { name, consumer, memberId: null, records: [], joins: 0 }
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
        m.memberId = payload.memberId
        m.joins += 1
      })
      await consumer.connect()
      await consumer.subscribe({ topics: [cmd.topic], fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ topic, partition, message }) => {
          m.records.push(fromMessage(topic, partition, message))
        },
      })
      members.push(m)
      // The second member joins only after the first has its (full) assignment, so
      // the test sees a real rebalance rather than one simultaneous join.
      if (name === 'a') await waitFor(() => m.joins > 0, timeoutMs, 'member a to join')
    }

    const all = [...Array(cmd.partitions).keys()]
    const stable = await waitFor(async () => {
      const { groups } = await admin.describeGroups([cmd.groupId])
      const g = groups[0]
      if (g.state !== 'Stable' || g.members.length !== 2) return null
      const byMember = {}
      for (const gm of g.members) {
        const parts = decodeAssignment(gm.memberAssignment)[cmd.topic] || []
        byMember[gm.memberId] = parts.sort((x, y) => x - y)
      }
      const ids = members.map(m => m.memberId)
      if (!ids.every(id => byMember[id] && byMember[id].length > 0)) return null
      const union = Object.values(byMember).flat().sort((x, y) => x - y)
      if (JSON.stringify(union) !== JSON.stringify(all)) return null
      return { state: g.state, protocol: g.protocol, protocolType: g.protocolType, byMember }
    }, timeoutMs, 'a Stable group of 2 members covering all partitions')

    const messages = []
    for (const p of all) {
      for (let i = 0; i < cmd.perPartition; i++) {
        messages.push({ partition: p, key: `k-${p}-${i}`, value: `v-${p}-${i}` })
      }
    }
    await producer.send({ topic: cmd.topic, messages, acks: -1 })
    const total = messages.length
    await waitFor(() => members.reduce((n, m) => n + m.records.length, 0) >= total, timeoutMs,
      `${total} records across both members`)

    for (const m of members) {
      const next = {}
      for (const r of m.records) next[r.partition] = Math.max(next[r.partition] || 0, r.offset + 1)
      const offsets = Object.entries(next).map(([p, o]) =>
        ({ topic: cmd.topic, partition: Number(p), offset: String(o) }))
      if (offsets.length) await m.consumer.commitOffsets(offsets)
    }
    const committed = await admin.fetchOffsets({ groupId: cmd.groupId, topics: [cmd.topic] })
    return {
      stable,
      members: members.map(m => ({ name: m.name, memberId: m.memberId, joins: m.joins,
        records: m.records })),
      committed: jsonable(committed),
    }
  } finally {
    for (const m of members) await m.consumer.disconnect()
    await producer.disconnect()
    await admin.disconnect()
  }
}

// ------------------------------------------------------------------------- longpoll

// KIP-74/fetch purgatory: an empty Fetch is held for maxWaitTimeInMs, and a Produce
// wakes a waiting Fetch at once (kafkajs sends min_bytes=1).
async function longpoll(cmd) {
  const kafka = makeKafka(cmd)
  const timeoutMs = cmd.timeoutMs || 30000
  const consumer = kafka.consumer({
    groupId: cmd.groupId, sessionTimeout: 30000, heartbeatInterval: 1000,
    maxWaitTimeInMs: cmd.maxWaitTimeInMs, allowAutoTopicCreation: false,
  })
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  track(consumer)
  track(producer)
  const fetches = []
  consumer.on(consumer.events.REQUEST, ({ payload }) => {
    if (payload.apiName === 'Fetch') fetches.push({ duration: payload.duration, at: Date.now() })
  })
  let received = null
  await producer.connect()
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [cmd.topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (received === null) received = { at: Date.now(), value: str(message.value) }
      },
    })
    // One empty fetch must come back first: it tells how long the broker held it.
    await waitFor(() => fetches.length >= 1, timeoutMs, 'a first (empty) Fetch response')
    const emptyFetch = fetches[0]
    const sentAt = Date.now()
    await producer.send({ topic: cmd.topic, messages: [{ partition: 0, value: 'wake-up' }],
      acks: -1 })
    await waitFor(() => received !== null, timeoutMs, 'the produced record')
    return { emptyFetchMs: emptyFetch.duration, latencyMs: received.at - sentAt,
      value: received.value }
  } finally {
    await consumer.disconnect()
    await producer.disconnect()
  }
}

// ------------------------------------------------------------------------- admin

async function adminOps(cmd) {
  const kafka = makeKafka(cmd)
  const admin = kafka.admin()
  track(admin)
  await admin.connect()
  const results = []
  try {
    for (const { op, args } of cmd.ops) {
      try {
        let r = await admin[op](...(args || []))
        if (op === 'describeGroups') {
          const member = m => ({ ...m, memberAssignment: decodeAssignment(m.memberAssignment),
            memberMetadata: undefined })
          r = { groups: r.groups.map(g => ({ ...g, members: g.members.map(member) })) }
        }
        results.push({ op, ok: true, result: jsonable(r === undefined ? null : r) })
      } catch (e) {
        results.push({ op, ok: false, error: e.message, type: e.type || e.name,
          errors: (e.errors || []).map(x => ({ type: x.type || x.name, message: x.message })) })
        if (!cmd.continueOnError) break
      }
    }
    return { results }
  } finally {
    await admin.disconnect()
  }
}

// ------------------------------------------------------------------------- main

const COMMANDS = { produce, produceAcrossRestart, produceStream, consume, group, longpoll, transactions,
  admin: adminOps }

// stdin: the first line is the command; later lines are signals a command may wait for
// (nextLine), e.g. "the broker has been restarted, go on".
const stdinLines = []
let lineWaiter = null
let stdinClosed = false
const rl = require('readline').createInterface({ input: process.stdin })
rl.on('line', line => {
  if (lineWaiter) {
    const w = lineWaiter
    lineWaiter = null
    w.resolve(line)
  } else stdinLines.push(line)
})
rl.on('close', () => {
  stdinClosed = true
  if (lineWaiter) lineWaiter.reject(new Error('stdin closed while waiting for a line'))
})

function nextLine() {
  if (stdinLines.length) return Promise.resolve(stdinLines.shift())
  if (stdinClosed) return Promise.reject(new Error('stdin closed while waiting for a line'))
  return new Promise((resolve, reject) => { lineWaiter = { resolve, reject } })
}

async function main() {
  const cmd = JSON.parse(await nextLine())
  const fn = COMMANDS[cmd.cmd]
  if (!fn) throw new Error(`unknown command ${cmd.cmd}`)
  let result
  try {
    result = await fn(cmd)
  } catch (e) {
    // a test that expects the broker to refuse something asks for the error as JSON
    if (!cmd.expectError) throw e
    result = { error: { name: e.name, type: e.type, code: e.code, message: e.message,
      retriable: e.retriable } }
  }
  result.versions = versions
  result.kafkajsVersion = require('kafkajs/package.json').version
  // stdout may be a pipe, which Node writes asynchronously: exit only once it is flushed
  await new Promise(resolve => process.stdout.write(JSON.stringify(result) + '\n', resolve))
}

main().then(
  () => process.exit(0),
  e => {
    process.stderr.write(`client.js failed: ${e && e.stack ? e.stack : e}\n`)
    process.exit(1)
  },
)
