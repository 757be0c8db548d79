// Shared set-up of the e2b-js suites: reads SBX_URL and SBX_API_KEY (failing
// loudly, never skipping, when they are missing) and points the e2b SDK at
// sbx. Import it before the SDK: the SDK's ConnectionConfig reads the E2B_*
// variables on every construction, so nothing can pick up a default
// (e2b.app).

export const SBX_URL = process.env.SBX_URL
export const SBX_API_KEY = process.env.SBX_API_KEY

{
  const missing = []
  if (!SBX_URL) missing.push('SBX_URL')
  if (!SBX_API_KEY) missing.push('SBX_API_KEY')
  if (missing.length > 0) {
    const msg =
      `e2b-js e2e tests: required environment variable(s) not set: ${missing.join(', ')}. ` +
      'Start sbx and run e.g. `SBX_URL=http://127.0.0.1:49982 SBX_API_KEY=e2b_... npm test`.'
    console.error(msg)
    throw new Error(msg)
  }
  try {
    const u = new URL(SBX_URL)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`unsupported protocol ${u.protocol}`)
  } catch (err) {
    const msg = `e2b-js e2e tests: SBX_URL=${JSON.stringify(SBX_URL)} is not an http(s) URL: ${err.message}`
    console.error(msg)
    throw new Error(msg)
  }
}

process.env.E2B_API_URL = SBX_URL
process.env.E2B_SANDBOX_URL = SBX_URL
// The volume-content API (Volume#readFile...) is served by sbx too.
process.env.E2B_VOLUME_API_URL = SBX_URL
process.env.E2B_API_KEY = SBX_API_KEY
process.env.E2B_DEBUG = 'false' // debug mode would bypass the API entirely
