// The supervisor's own memory, for /metrics: its resident set and its V8
// heap in use. A supervisor runs for months while workers come and go, so
// these must stay flat whatever the number of workers it has started
// (issue 23, docs/memory.md). Under `node --expose-gc`, a debugging flag,
// the heap is read after a full GC, so that a scrape shows what is retained
// rather than what awaits collection: bench/soak.mjs and bench/memory.mjs run
// the supervisor that way. Without the flag nothing is collected here.
export interface ProcessMemory {
  rss: number
  heapUsed: number
  /** The V8 heap committed, garbage included: what heapUsed lives in, sized by V8, part of rss. */
  heapTotal: number
  /** heapUsed was read after a forced full GC (node --expose-gc). */
  afterGc: boolean
}

export function processMemory (): ProcessMemory {
  const gc = (globalThis as { gc?: () => void }).gc
  if (typeof gc === 'function') gc()
  const { rss, heapUsed, heapTotal } = process.memoryUsage()
  return { rss, heapUsed, heapTotal, afterGc: typeof gc === 'function' }
}

/** The Prometheus text of processMemory(). */
export function renderProcessMemory (m: ProcessMemory): string {
  return [
    '# HELP fastify_reuseport_supervisor_resident_memory_bytes Resident set size of the supervisor process.',
    '# TYPE fastify_reuseport_supervisor_resident_memory_bytes gauge',
    `fastify_reuseport_supervisor_resident_memory_bytes ${m.rss}`,
    '# HELP fastify_reuseport_supervisor_heap_used_bytes V8 heap in use in the supervisor; after_gc="1" when read after a full GC (node --expose-gc).',
    '# TYPE fastify_reuseport_supervisor_heap_used_bytes gauge',
    `fastify_reuseport_supervisor_heap_used_bytes{after_gc="${m.afterGc ? 1 : 0}"} ${m.heapUsed}`,
    '# HELP fastify_reuseport_supervisor_heap_total_bytes V8 heap committed in the supervisor, garbage included (sized by V8).',
    '# TYPE fastify_reuseport_supervisor_heap_total_bytes gauge',
    `fastify_reuseport_supervisor_heap_total_bytes ${m.heapTotal}`
  ].join('\n') + '\n'
}
