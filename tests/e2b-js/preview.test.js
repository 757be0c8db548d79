// Preview URLs with the unmodified e2b SDK: web servers inside a sandbox
// (tests/e2e/testdata/preview-server.js, on 127.0.0.1:8080, 0.0.0.0:3000 and
// an h2c server on 127.0.0.1:9090) reached at `sandbox.getHost(port)` and by
// E2b-Sandbox-Id/-Port headers: HTTP/1.1, HTTP/2, server-sent events one by
// one, a WebSocket echo, private sandboxes (allowPublicTraffic: false) and
// the errors for closed ports and gone sandboxes, and ports that speak TLS
// (httpsPorts) behind a masked Host (maskRequestHost).
//
// Two ways to run it:
//
//   SBX_URL=http://127.0.0.1:PORT SBX_API_KEY=... node --test preview.test.js
//     sbx with its default domain, localhost:PORT: getHost(3000) is
//     3000-{id}.localhost:PORT, which resolve.js resolves as browsers do.
//
//   SBX_TLS_DOMAIN=sbx.test SBX_TEST_HOSTS=sbx.test=127.x.y.z
//   NODE_EXTRA_CA_CERTS=ca.pem SBX_URL=https://... SBX_API_KEY=...
//     sbx on 127.x.y.z:443 with a wildcard certificate for *.sbx.test and
//     --domain sbx.test: the SDK gets nothing but E2B_DOMAIN and the key,
//     as with a real deployment (docs/operations.md), and builds
//     https://api.sbx.test and https://49983-{id}.sbx.test itself.

import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { randomBytes, createHash, randomUUID } from 'node:crypto'
import http2 from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'

import './resolve.js'
import { SBX_URL } from './env.js'

const TLS_DOMAIN = process.env.SBX_TLS_DOMAIN
if (TLS_DOMAIN) {
  // Only the domain, as a user of a real deployment would configure it.
  delete process.env.E2B_API_URL
  delete process.env.E2B_SANDBOX_URL
  process.env.E2B_DOMAIN = TLS_DOMAIN
}
const { Sandbox } = await import('e2b')

const SCHEME = TLS_DOMAIN ? 'https' : 'http'
// Where the header route is sent: the API's own address.
const API_BASE = TLS_DOMAIN ? `https://api.${TLS_DOMAIN}` : SBX_URL
const EXPECTED_DOMAIN = TLS_DOMAIN ?? `localhost:${new URL(SBX_URL).port}`
const RUN = randomUUID()
const TIMEOUT = 60_000
const EVENT_TIMEOUT_MS = 20_000 // a failure bound, not synchronisation
const SERVER = readFileSync(new URL('../e2e/testdata/preview-server.js', import.meta.url), 'utf8')

const sandboxes = []
async function create(opts = {}) {
  const sbx = await Sandbox.create('base', { timeoutMs: 120_000, metadata: { suite: 'e2b-js-preview', run: RUN }, ...opts })
  sandboxes.push(sbx)
  return sbx
}

after(async () => {
  for (const sbx of sandboxes) {
    try {
      await sbx.kill()
    } catch (err) {
      console.error(`cleanup: could not kill ${sbx.sandboxId}: ${err}`)
    }
  }
})

/** Starts the preview server in sbx on each "HOST PORT [MODE]". */
async function startServers(sbx, ...addrs) {
  await sbx.files.write('/tmp/preview-server.js', SERVER)
  for (const a of addrs) {
    let out = ''
    let ready
    const isReady = new Promise((resolve) => (ready = resolve))
    await sbx.commands.run(`node /tmp/preview-server.js ${a}`, {
      background: true,
      onStdout: (d) => {
        out += d
        if (out.includes('ready')) ready()
      },
    })
    await withTimeout(isReady, `server ${a} ready`)
  }
}

function withTimeout(promise, what, ms = EVENT_TIMEOUT_MS) {
  let timer
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms))),
  ])
}

const url = (sbx, port, path) => `${SCHEME}://${sbx.getHost(port)}${path}`
const headerRoute = (sbx, port) => ({ 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(port) })

/** The two ways to address a port: [name, (sbx, port, path, init) => fetch]. */
const ROUTES = [
  ['getHost', (sbx, port, path, init = {}) => fetch(url(sbx, port, path), init)],
  ['headers', (sbx, port, path, init = {}) => fetch(API_BASE + path, { ...init, headers: { ...headerRoute(sbx, port), ...init.headers } })],
]

describe('preview URLs', { timeout: 4 * TIMEOUT }, () => {
  let sbx
  test('getHost names the port under the domain sbx returned', { timeout: TIMEOUT }, async () => {
    sbx = await create()
    assert.equal(sbx.sandboxDomain, EXPECTED_DOMAIN)
    assert.equal(sbx.getHost(3000), `3000-${sbx.sandboxId}.${EXPECTED_DOMAIN}`)
    assert.equal(sbx.trafficAccessToken, undefined)
    await startServers(sbx, '127.0.0.1 8080', '0.0.0.0 3000', '127.0.0.1 9090 h2c')
  })

  for (const [name, get] of ROUTES) {
    for (const port of [8080, 3000]) {
      test(`${name}: HTTP to port ${port}`, { timeout: TIMEOUT }, async () => {
        const res = await get(sbx, port, '/hello?x=1')
        const body = await res.text()
        assert.equal(res.status, 200, body)
        assert.match(body, /^proto=1\.1 /)
        assert.match(body, / path=\/hello\?x=1 /)
        assert.match(body, new RegExp(` xfp=${SCHEME}$`))
        if (name === 'getHost') assert.match(body, new RegExp(` host=${sbx.getHost(port).replace(/\./g, '\\.')} `))
      })
    }

    test(`${name}: server-sent events arrive one by one`, { timeout: TIMEOUT }, async () => {
      const res = await get(sbx, 3000, '/sse')
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-type'), 'text/event-stream')
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
      let buf = ''
      const nextEvent = async () => {
        while (!buf.includes('\n\n')) {
          const { value, done } = await withTimeout(reader.read(), 'next event (the proxy buffers?)')
          if (done) throw new Error(`stream ended; got ${JSON.stringify(buf)}`)
          buf += value
        }
        const i = buf.indexOf('\n\n')
        const ev = buf.slice(0, i)
        buf = buf.slice(i + 2)
        return ev
      }
      for (let i = 1; i <= 3; i++) {
        // The server sends event i only now, and the stream is still open.
        const emitted = await get(sbx, 3000, `/emit?data=event-${i}`, { method: 'POST' })
        assert.notEqual(await emitted.text(), 'sent to 0')
        assert.equal(await nextEvent(), `data: event-${i}`)
      }
      await (await get(sbx, 3000, '/end', { method: 'POST' })).text()
      const { done } = await withTimeout(reader.read(), 'end of stream')
      assert.equal(done, true)
    })
  }

  test('HTTP/2 to sbx: an HTTP/1.1 server and an h2c server in the sandbox', { timeout: TIMEOUT }, async () => {
    for (const [port, proto] of [
      [8080, '1.1'],
      [9090, '2.0'],
    ]) {
      const { status, body, trailers } = await h2get(`${SCHEME}://${sbx.getHost(port)}`, '/hello')
      assert.equal(status, 200, body)
      assert.match(body, new RegExp(`^proto=${proto.replace('.', '\\.')} `))
      if (port === 9090) assert.equal(trailers['x-trailer'], 'done')
    }
  })

  test('WebSocket echo at getHost', { timeout: TIMEOUT }, async () => {
    const ws = await wsConnect(`${SCHEME}://${sbx.getHost(3000)}/ws`)
    try {
      for (const msg of [Buffer.from('hello'), randomBytes(300), randomBytes(70_000)]) {
        ws.send(msg)
        assert.deepEqual(await withTimeout(ws.next(), `echo of ${msg.length} bytes`), msg)
      }
    } finally {
      ws.close()
    }
  })

  test('a closed port is a 502 in E2B error shape', { timeout: TIMEOUT }, async () => {
    const res = await fetch(url(sbx, 4444, '/'))
    assert.equal(res.status, 502)
    const body = await res.json()
    assert.equal(body.code, 502)
    assert.match(body.message, /nothing is listening on port 4444/)
  })

  test('a killed sandbox is a 502 in E2B error shape', { timeout: TIMEOUT }, async () => {
    const gone = await create()
    const host = gone.getHost(3000)
    await gone.kill()
    const res = await fetch(`${SCHEME}://${host}/`)
    assert.equal(res.status, 502)
    const body = await res.json()
    assert.equal(body.code, 502)
    assert.match(body.message, /not found/)
  })
})

describe('private sandbox (allowPublicTraffic: false)', { timeout: 2 * TIMEOUT }, () => {
  test('ports need the traffic access token; the SDK needs nothing more', { timeout: 2 * TIMEOUT }, async () => {
    const sbx = await create({ network: { allowPublicTraffic: false } })
    assert.match(sbx.trafficAccessToken ?? '', /^[0-9a-f]{64}$/)
    // Commands and files go to the agent, which keeps its own token.
    await startServers(sbx, '127.0.0.1 8080')
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.equal(info.network?.allowPublicTraffic, false)
    for (const [name, get] of ROUTES) {
      let res = await get(sbx, 8080, '/hello')
      assert.equal(res.status, 403, `${name} without the token`)
      let body = await res.json()
      assert.equal(body.code, 403)
      assert.match(body.message, /private/)

      res = await get(sbx, 8080, '/hello', { headers: { 'e2b-traffic-access-token': 'f'.repeat(64) } })
      assert.equal(res.status, 403, `${name} with a wrong token`)
      assert.match((await res.json()).message, /invalid traffic access token/)

      res = await get(sbx, 8080, '/hello', { headers: { 'e2b-traffic-access-token': sbx.trafficAccessToken } })
      body = await res.text()
      assert.equal(res.status, 200, `${name} with the token: ${body}`)
      assert.match(body, / traffic=undefined /) // not passed on to the app
    }
    // Connecting again hands out the same token.
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(again.trafficAccessToken, sbx.trafficAccessToken)
  })
})

describe('HTTPS ports and a masked host (network.httpsPorts, maskRequestHost)', { timeout: 2 * TIMEOUT }, () => {
  test('sbx speaks TLS to the listed port (self-signed), the servers see the mask', { timeout: 2 * TIMEOUT }, async () => {
    const mask = '${PORT}-masked.example.test'
    const sbx = await create({ network: { httpsPorts: [8443], maskRequestHost: mask } })
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network?.httpsPorts, [8443])
    assert.equal(info.network?.maskRequestHost, mask)
    // A certificate nobody trusts, made in the sandbox.
    await sbx.commands.run('openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -days 1 -keyout /tmp/tls-key.pem -out /tmp/tls-cert.pem')
    await startServers(sbx, '127.0.0.1 8080', '127.0.0.1 8443 tls', '127.0.0.1 9443 tls')
    for (const [name, get] of ROUTES) {
      let res = await get(sbx, 8443, '/hello')
      let body = await res.text()
      assert.equal(res.status, 200, `${name}: ${body}`)
      assert.match(body, /^proto=1\.1 host=8443-masked\.example\.test path=\/hello .* tls=true$/, name)
      res = await get(sbx, 8080, '/hello')
      body = await res.text()
      assert.equal(res.status, 200, `${name}: ${body}`)
      assert.match(body, / host=8080-masked\.example\.test /, name)
      // A TLS port not listed is spoken to in plain HTTP, and fails.
      res = await get(sbx, 9443, '/hello')
      assert.equal(res.status, 502, `${name}: unlisted TLS port`)
      assert.equal((await res.json()).code, 502)
    }
    // HTTP/2 from the client goes on as HTTP/2, negotiated by ALPN.
    const { status, body } = await h2get(`${SCHEME}://${sbx.getHost(8443)}`, '/hello')
    assert.equal(status, 200, body)
    assert.equal(body, 'proto=2.0 host=8443-masked.example.test path=/hello tls=true')
    // WebSocket over the TLS hop.
    const ws = await wsConnect(`${SCHEME}://${sbx.getHost(8443)}/ws`)
    try {
      for (const msg of [Buffer.from('hello'), randomBytes(70_000)]) {
        ws.send(msg)
        assert.deepEqual(await withTimeout(ws.next(), `echo of ${msg.length} bytes`), msg)
      }
    } finally {
      ws.close()
    }
    // The SDK's own calls (envd's port) are not masked: commands still work.
    assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n')
  })
})

/** GET over HTTP/2 (h2c with prior knowledge for http:, ALPN for https:). */
function h2get(origin, path) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const client = http2.connect(origin)
      client.on('error', reject)
      const req = client.request({ ':path': path })
      let status
      let trailers = {}
      let body = ''
      req.setEncoding('utf8')
      req.on('response', (h) => (status = h[':status']))
      req.on('trailers', (t) => (trailers = t))
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        client.close()
        resolve({ status, body, trailers })
      })
      req.on('error', reject)
      req.end()
    }),
    `HTTP/2 GET ${origin}${path}`,
  )
}

/**
 * A minimal WebSocket client (RFC 6455; binary messages, unfragmented), so
 * the test runs on every Node.js version the SDK supports, with or without
 * a built-in WebSocket.
 */
function wsConnect(target) {
  const u = new URL(target)
  const secure = u.protocol === 'https:'
  const port = Number(u.port || (secure ? 443 : 80))
  const key = randomBytes(16).toString('base64')
  const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
  return withTimeout(
    new Promise((resolve, reject) => {
      const sock = secure
        ? tls.connect({ host: u.hostname, port, servername: u.hostname, ALPNProtocols: ['http/1.1'] })
        : net.connect({ host: u.hostname, port })
      sock.once('error', reject)
      sock.once(secure ? 'secureConnect' : 'connect', () => {
        sock.write(
          `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
            `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`,
        )
      })
      let buf = Buffer.alloc(0)
      let open = false
      const waiting = []
      const frames = []
      const deliver = () => {
        while (waiting.length && frames.length) waiting.shift()(frames.shift())
      }
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d])
        if (!open) {
          const end = buf.indexOf('\r\n\r\n')
          if (end < 0) return
          const head = buf.subarray(0, end).toString()
          buf = buf.subarray(end + 4)
          if (!head.startsWith('HTTP/1.1 101') || !head.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
            return reject(new Error(`upgrade refused: ${head}`))
          }
          open = true
          resolve({
            send(payload) {
              const n = payload.length
              const hdr =
                n < 126
                  ? Buffer.from([0x82, 0x80 | n])
                  : n < 65536
                    ? Buffer.from([0x82, 0x80 | 126, n >> 8, n & 255])
                    : Buffer.concat([Buffer.from([0x82, 0x80 | 127]), bigEndian64(n)])
              const mask = randomBytes(4)
              const masked = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]))
              sock.write(Buffer.concat([hdr, mask, masked]))
            },
            next: () => new Promise((r) => (waiting.push(r), deliver())),
            close: () => sock.destroy(),
          })
        }
        for (;;) {
          if (buf.length < 2) return
          let len = buf[1] & 0x7f
          let off = 2
          if (len === 126) {
            if (buf.length < 4) return
            len = buf.readUInt16BE(2)
            off = 4
          } else if (len === 127) {
            if (buf.length < 10) return
            len = Number(buf.readBigUInt64BE(2))
            off = 10
          }
          if (buf.length < off + len) return
          frames.push(Buffer.from(buf.subarray(off, off + len)))
          buf = buf.subarray(off + len)
          deliver()
        }
      })
    }),
    `WebSocket to ${target}`,
  )
}

function bigEndian64(n) {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}
