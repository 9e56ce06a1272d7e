// Turns bench results into the markdown table and the SVG chart in bench/README.md.

const median = xs => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** Median of each figure per (app, conn, mode), over the repetitions. */
export function summarize (results) {
  const groups = new Map()
  for (const r of results.runs) {
    const key = `${r.app}|${r.conn}|${r.mode}`
    if (!groups.has(key)) groups.set(key, [])
    groups.get(key).push(r)
  }
  return [...groups.values()].map(rs => {
    const shares = rs.map(r => {
      const counts = Object.entries(r.pids).filter(([pid]) => pid !== 'none').map(([, n]) => n)
      const total = counts.reduce((a, b) => a + b, 0)
      return counts.map(n => n / total).sort((a, b) => b - a)
    })
    return {
      app: rs[0].app,
      conn: rs[0].conn,
      mode: rs[0].mode,
      rps: median(rs.map(r => r.rps)),
      p50ms: median(rs.map(r => r.p50ms)),
      p99ms: median(rs.map(r => r.p99ms)),
      maxms: Math.max(...rs.map(r => r.maxms)),
      failed: rs.reduce((a, r) => a + r.failed, 0),
      readyMs: median(rs.map(r => r.readyMs)),
      shares: shares[Math.floor(shares.length / 2)] ?? [],
      minShare: Math.min(...shares.map(s => s.length > 1 ? s[s.length - 1] : 1)),
      maxShare: Math.max(...shares.map(s => s[0] ?? 1)),
      supervisorRssMb: median(rs.map(r => r.supervisorRssMb ?? NaN).filter(x => !Number.isNaN(x))),
      workerRssMb: median(rs.flatMap(r => r.workerRssMb)),
      supervisorCpu: median(rs.map(r => r.supervisorCpu ?? NaN).filter(x => !Number.isNaN(x)))
    }
  })
}

const fmt = (x, d = 0) => Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a'
const pct = x => Number.isFinite(x) ? (x * 100).toFixed(1) + '%' : 'n/a'

export function ratios (results) {
  const s = summarize(results)
  const get = (app, conn, mode) => s.find(r => r.app === app && r.conn === conn && r.mode === mode)
  const ratio = (app, conn, a, b) => (get(app, conn, a)?.rps ?? NaN) / (get(app, conn, b)?.rps ?? NaN)
  const frpNew = get('hello', 'new', 'fastify-reuseport')
  const restart = conn => median(results.restarts.filter(r => r.mode === 'fastify-reuseport' && r.conn === conn).map(r => r.onceRatio))
  const frpRuns = s.filter(r => r.mode === 'fastify-reuseport')
  return [
    ['new connections vs cluster round-robin (hello)', '≥ 1.4×', ratio('hello', 'new', 'fastify-reuseport', 'cluster-rr'), 'x'],
    ['new connections vs cluster round-robin (1 ms CPU)', '≥ 1.4×', ratio('cpu', 'new', 'fastify-reuseport', 'cluster-rr'), 'x'],
    ['keep-alive vs cluster round-robin (hello)', '≥ 1.0×', ratio('hello', 'keepalive', 'fastify-reuseport', 'cluster-rr'), 'x'],
    ['keep-alive vs cluster round-robin (1 ms CPU)', '≥ 1.0×', ratio('cpu', 'keepalive', 'fastify-reuseport', 'cluster-rr'), 'x'],
    ['vs Node 22 core reusePort, keep-alive (both on Node 22)', '≥ 0.97×', ratio('hello', 'keepalive', 'fastify-reuseport-node22', 'node22-reuseport'), 'x'],
    ['vs Node 22 core reusePort, new connections (both on Node 22)', '≥ 0.97×', ratio('hello', 'new', 'fastify-reuseport-node22', 'node22-reuseport'), 'x'],
    ['vs Node 24 core reusePort, keep-alive (both on Node 24)', '≥ 0.97×', ratio('hello', 'keepalive', 'fastify-reuseport-node24', 'node24-reuseport'), 'x'],
    ['vs Node 24 core reusePort, new connections (both on Node 24)', '≥ 0.97×', ratio('hello', 'new', 'fastify-reuseport-node24', 'node24-reuseport'), 'x'],
    ['the cluster fallback (--balancer cluster) vs plain cluster round-robin, new connections', '≈ 1.0×', ratio('hello', 'new', 'fastify-reuseport-cluster', 'cluster-rr'), 'x'],
    ['per-worker share, new connections (hello)', '45–55%', frpNew ? `${pct(frpNew.minShare)} – ${pct(frpNew.maxShare)}` : 'n/a', 's'],
    [`throughput in a ${results.seconds} s window with a rolling restart, keep-alive`, '≥ 80%', restart('keepalive'), '%'],
    [`throughput in a ${results.seconds} s window with a rolling restart, new connections`, '≥ 80%', restart('new'), '%'],
    ['supervisor RSS', '≤ 60 MB', median(frpRuns.map(r => r.supervisorRssMb)), 'MB'],
    ['supervisor CPU at steady state (share of one core)', '≈ 0', median(frpRuns.map(r => r.supervisorCpu)), '%']
  ]
}

export function renderMarkdown (results) {
  const s = summarize(results)
  const lines = []
  lines.push(`Measured ${results.date.slice(0, 10)} on ${results.machine.cpus} × ${results.machine.model}, Linux ${results.machine.kernel}, ` +
    `Node ${[results.versions.node20, results.versions.node22, results.versions.node24].filter(Boolean).join(', ')}, ${results.versions.wrk}. ` +
    `${results.workers} workers; client \`${results.client}\` on the same machine; ` +
    // --reps 0: a restart-only run (bench/results/peers-restart/).
    (results.runs.length > 0 ? `median of ${results.reps} interleaved runs of ${results.seconds} s.` : `restart runs only, ${results.restartReps} of ${results.seconds} s.`))
  lines.push('', `Command: \`${results.command}\``, '')
  lines.push('| goal | target | measured |', '| --- | --- | --- |')
  for (const [name, target, value, kind] of ratios(results)) {
    const shown = kind === 'x' ? (Number.isFinite(value) ? value.toFixed(2) + '×' : 'n/a') : kind === '%' ? pct(value) : kind === 'MB' ? fmt(value, 1) + ' MB' : value
    lines.push(`| ${name} | ${target} | ${shown} |`)
  }
  lines.push('', '| app | connections | mode | req/s | p50 ms | p99 ms | max ms | worker shares | failed | start→ready ms |', '| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |')
  for (const r of s) {
    lines.push(`| ${r.app} | ${r.conn} | ${r.mode} | ${fmt(r.rps)} | ${fmt(r.p50ms, 2)} | ${fmt(r.p99ms, 2)} | ${fmt(r.maxms, 1)} | ${r.shares.map(pct).join(' / ')} | ${r.failed} | ${fmt(r.readyMs)} |`)
  }
  if (results.restarts.length > 0) {
    lines.push('', `| rolling restarts (${results.workers} workers), median of ${results.restartReps ?? results.reps} | connections | steady req/s | one restart in ${results.seconds} s | restart took | back to back | failed in one restart, each run | failed (all runs) |`, '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
    const groups = new Map()
    for (const r of results.restarts) {
      const key = `${r.mode}|${r.conn}`
      if (!groups.has(key)) groups.set(key, [])
      groups.get(key).push(r)
    }
    for (const rs of groups.values()) {
      const m = f => median(rs.map(f))
      lines.push(`| ${rs[0].mode} | ${rs[0].conn} | ${fmt(m(r => r.steadyRps))} | ${fmt(m(r => r.onceRps))} (${pct(m(r => r.onceRatio))}) | ${fmt(m(r => r.reloadMs))} ms | ${fmt(m(r => r.backToBackRps))} (${pct(m(r => r.backToBackRatio))}) | ${rs.map(r => r.onceFailed ?? 'n/a').join(' / ')} | ${rs.reduce((a, r) => a + r.failed, 0)} |`)
    }
  }
  const frp = s.filter(r => r.mode === 'fastify-reuseport')
  if (frp.length > 0) {
    lines.push('', `Memory: supervisor ${fmt(median(frp.map(r => r.supervisorRssMb)), 1)} MB RSS, each worker ${fmt(median(frp.map(r => r.workerRssMb)), 1)} MB. ` +
      `Supervisor CPU during the measured runs: ${pct(median(frp.map(r => r.supervisorCpu)))} of one core.`)
  }
  return lines.join('\n') + '\n'
}

const COLORS = { single: '#9e9e9e', 'cluster-rr': '#e57373', 'cluster-none': '#ffb74d', 'node22-reuseport': '#64b5f6', 'naive-reuseport': '#ba68c8', 'fastify-reuseport': '#2e7d32', 'fastify-reuseport-node22': '#66bb6a', 'node24-reuseport': '#1565c0', 'fastify-reuseport-node24': '#a5d6a7', 'fastify-reuseport-cluster': '#8d6e63' }

export function renderSvg (results) {
  const s = summarize(results)
  const panels = [...new Set(s.map(r => `${r.app}|${r.conn}`))]
  const modes = [...new Set(s.map(r => r.mode))]
  const bar = 18
  const panelH = modes.length * (bar + 6) + 40
  const width = 760
  const labelW = 190
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${panels.length * panelH + 20}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>']
  panels.forEach((panel, pi) => {
    const [app, conn] = panel.split('|')
    const rows = modes.map(m => s.find(r => r.app === app && r.conn === conn && r.mode === m)).filter(Boolean)
    const max = Math.max(...rows.map(r => r.rps))
    const y0 = 20 + pi * panelH
    out.push(`<text x="10" y="${y0}" font-weight="bold">${app === 'cpu' ? '1 ms of CPU per request' : 'hello world'}, ${conn === 'new' ? 'a new connection per request' : 'keep-alive'} (req/s, ${results.workers} workers)</text>`)
    rows.forEach((r, i) => {
      const y = y0 + 12 + i * (bar + 6)
      const w = Math.max(1, (width - labelW - 90) * r.rps / max)
      out.push(`<text x="${labelW - 8}" y="${y + bar - 5}" text-anchor="end">${r.mode}</text>`)
      out.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${bar}" fill="${COLORS[r.mode] ?? '#607d8b'}"/>`)
      out.push(`<text x="${labelW + w + 6}" y="${y + bar - 5}">${fmt(r.rps)}</text>`)
    })
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}
