// Name resolution for the e2b-js suites, the way the names resolve for a
// user of sbx:
//
// - RFC 6761 reserves *.localhost for loopback; browsers, curl and
//   systemd-resolved resolve every such name so. sbx's default sandbox
//   domain is localhost:PORT, so sandbox.getHost(3000) is
//   3000-{id}.localhost:PORT. Node.js resolves through getaddrinfo, which on
//   glibc without nss-myhostname knows only "localhost" itself; this module
//   makes Node resolve the rest of *.localhost as a browser would.
// - SBX_TEST_HOSTS="sbx.test=127.1.2.3" maps a domain and every name under
//   it to an address, standing in for the wildcard DNS record of a real
//   deployment (docs/operations.md).
//
// Import it before anything connects. Only these names are affected; all
// others resolve as usual.
import dns from 'node:dns'

const maps = [['localhost', '127.0.0.1']]
for (const entry of (process.env.SBX_TEST_HOSTS || '').split(',').filter(Boolean)) {
  const [domain, address] = entry.split('=')
  maps.push([domain, address])
}

function mapped(host) {
  if (typeof host !== 'string') return undefined
  const h = host.toLowerCase().replace(/\.$/, '')
  for (const [domain, address] of maps) {
    if (h === domain || h.endsWith('.' + domain)) return address
  }
  return undefined
}

const lookup = dns.lookup
dns.lookup = function (host, options, callback) {
  if (typeof options === 'function') {
    callback = options
    options = {}
  }
  const address = mapped(host)
  if (address === undefined) return lookup.call(this, host, options, callback)
  const family = address.includes(':') ? 6 : 4
  if (options && options.all) return process.nextTick(callback, null, [{ address, family }])
  return process.nextTick(callback, null, address, family)
}
