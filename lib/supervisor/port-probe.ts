// One service per port unless asked (issue 17.2). Our slot sockets set
// SO_REUSEPORT, so they join any group already listening on the port, even
// one of another, forgotten `fastify-reuseport start`: old and new code would
// share the traffic without a word (20 requests split 12 to 8). Plain
// `fastify start` gets EADDRINUSE there, and so do we now, unless --join
// asks to share the port (blue/green hand-overs).
//
// The probe is a listener without SO_REUSEPORT (Node's default): the kernel
// refuses it with EADDRINUSE on a port with any listener, reuseport group or
// not (inet_csk_bind_conflict: both sockets must set SO_REUSEPORT to share).
// It is closed before the slots open; a process that takes the port in
// between joins, as before.
import net from 'node:net'

/** Rejects with Node's EADDRINUSE error when another process listens on one of these addresses at port. */
export async function probePort (addresses: ReadonlyArray<{ address: string }>, port: number, ipv6Only: boolean): Promise<void> {
  // Port 0 picks a free port: nobody can be on it yet.
  if (port === 0) return
  for (const { address } of addresses) {
    const err = await tryListen(address, port, ipv6Only)
    if (err?.code === 'EADDRINUSE') {
      err.message = `${err.message} (another process listens on it; --join shares it)`
      throw err
    }
    // Anything else (no IPv6 here, say) is for the slots' own listen() to report or skip.
  }
}

function tryListen (host: string, port: number, ipv6Only: boolean): Promise<NodeJS.ErrnoException | null> {
  return new Promise(resolve => {
    const server = net.createServer()
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err))
    server.listen({ host, port, ipv6Only, exclusive: true }, () => server.close(() => resolve(null)))
  })
}
