// stockflow console. Every value from the server is inserted as text (textContent), never as
// markup; charts arrive as server-rendered SVG and are shown as images (data: URLs), in which
// no script can run. The Content-Security-Policy allows no inline script either.
'use strict';

// Per page: commit listeners, timers and DOM listeners (an AbortController), all released when
// another page is shown.
const state = { session: null, source: null, listeners: new Set(), lastCommit: 0, hellos: 0, timers: [], abort: new AbortController(), gen: 0 };

// A page registers its timers and commit listeners with the generation it was started in: one
// replaced while it was still loading registers nothing.
function every(gen, ms, f) { if (gen === state.gen) state.timers.push(setInterval(f, ms)); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svgImage(svg, attrs) {
  return el('img', Object.assign({ src: 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg) }, attrs || {}));
}

async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function sign(text) {
  if (text === null || text === undefined) return '';
  return text.startsWith('-') ? 'down' : (/^0\.00$/.test(text) ? '' : 'up');
}

function fmtInt(n) { return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'); }

function errorBox(e) { return el('div', { class: 'error', role: 'alert' }, String(e.message || e)); }

// Live events: one EventSource for the page; pages subscribe to commits.
function connect() {
  if (state.source) state.source.close();
  const live = document.getElementById('live');
  const src = new EventSource('/api/events');
  state.source = src;
  src.addEventListener('hello', () => {
    live.textContent = 'live'; live.className = 'live on';
    // A reconnection (the console dropped this page as too slow, or restarted): what the page
    // shows may have missed commits.
    // A restarted console has a new CSRF token: the session is read again first.
    if (state.hellos++ > 0) api('/api/session').then((s) => { state.session = s; route(); }).catch(() => {});
  });
  src.addEventListener('commit', (ev) => {
    const data = JSON.parse(ev.data);
    state.lastCommit = data.last_commit;
    live.textContent = 'live · commit ' + fmtInt(data.last_commit);
    for (const f of state.listeners) f(data);
  });
  src.addEventListener('lagged', () => {
    // This page fell behind the stream: the server ends it, and the reconnection's hello
    // reloads what the page shows.
    live.textContent = 'reconnecting after a gap';
  });
  src.onerror = () => { live.textContent = 'reconnecting…'; live.className = 'live off'; };
}

function onCommit(gen, f) { if (gen === state.gen) state.listeners.add(f); }

// ---------------------------------------------------------------- portfolios
async function portfoliosPage(main) {
  const gen = state.gen;
  const params = new URLSearchParams(location.search);
  let page = Number(params.get('page') || 0);
  let q = params.get('q') || '';
  const size = 50;
  const search = el('input', { type: 'search', id: 'search', placeholder: 'Search portfolio or investor', value: q });
  const info = el('span', { class: 'muted', id: 'page-info' });
  const prev = el('button', { id: 'prev' }, '← Previous');
  const next = el('button', { id: 'next' }, 'Next →');
  const tbody = el('tbody', { id: 'portfolio-rows' });
  const table = el('table', { id: 'portfolios' },
    el('thead', {}, el('tr', {},
      el('th', {}, 'Investor'), el('th', {}, 'Portfolio'), el('th', {}, 'Last day'),
      el('th', { class: 'num' }, 'Value'), el('th', { class: 'num' }, 'Change'),
      el('th', { class: 'num' }, 'Change %'), el('th', {}, 'Last 60 days'))),
    tbody);
  const streamList = el('ul', { id: 'changes' });
  const streamInfo = el('p', { class: 'muted', id: 'changes-info' });
  main.replaceChildren(
    el('h1', {}, 'Portfolios'),
    el('div', { class: 'grid' },
      el('section', { class: 'card' }, el('div', { class: 'toolbar' }, search, prev, next, info), table),
      el('section', { class: 'card' }, el('h2', {}, 'Change stream'), streamInfo, el('div', { class: 'stream' }, streamList))));

  const rows = new Map();
  function fill(cells, latest) {
    cells.day.textContent = latest ? latest.day : '–';
    cells.value.textContent = latest ? latest.value_shown : '–';
    cells.change.textContent = latest && latest.change_shown !== null ? latest.change_shown : '–';
    cells.change.className = 'num ' + sign(latest && latest.change_shown);
    cells.pct.textContent = latest && latest.change_pct_shown !== null ? latest.change_pct_shown + ' %' : '–';
    cells.pct.className = 'num ' + sign(latest && latest.change_pct_shown);
  }
  async function load() {
    const url = '/api/portfolios?' + new URLSearchParams({ q, page, size });
    let data;
    try { data = await api(url); } catch (e) { tbody.replaceChildren(el('tr', {}, el('td', { colspan: 7 }, errorBox(e)))); return; }
    rows.clear();
    tbody.replaceChildren(...data.rows.map((r) => {
      const cells = {
        day: el('td', { class: 'day' }), value: el('td', { class: 'num value' }),
        change: el('td', { class: 'num' }), pct: el('td', { class: 'num' }),
        spark: el('td', { class: 'spark' }, r.sparkline ? svgImage(r.sparkline, { alt: 'last 60 days of ' + r.portfolio, width: 120, height: 28 }) : ''),
      };
      fill(cells, r.latest);
      const tr = el('tr', { id: 'row-' + r.portfolio, 'data-portfolio': r.portfolio },
        el('td', {}, r.investor, ' ', el('span', { class: 'muted' }, r.investor_name)),
        el('td', {}, el('a', { href: '/portfolios/' + encodeURIComponent(r.portfolio) }, r.portfolio), ' ', el('span', { class: 'muted' }, r.name)),
        cells.day, cells.value, cells.change, cells.pct, cells.spark);
      rows.set(r.portfolio, { tr, cells });
      return tr;
    }));
    const pages = Math.max(1, Math.ceil(data.total / size));
    info.textContent = `${fmtInt(data.total)} portfolios · page ${page + 1} of ${fmtInt(pages)}`;
    prev.disabled = page === 0;
    next.disabled = page + 1 >= pages;
    history.replaceState(null, '', '/?' + new URLSearchParams({ q, page }));
  }
  prev.onclick = () => { page = Math.max(0, page - 1); load(); };
  next.onclick = () => { page += 1; load(); };
  let timer;
  search.oninput = () => { clearTimeout(timer); timer = setTimeout(() => { q = search.value; page = 0; load(); }, 250); };

  const shown = [];
  const seen = new Set();
  const MAX_SHOWN = 500;
  function addChanges(changes, commits) {
    // Prepended one by one: the oldest first, so that the newest commit's latest day ends on top.
    const ordered = changes.slice().sort((a, b) => a.commit - b.commit || b.n - a.n);
    for (const c of ordered) {
      // The first load and the first events can overlap: each diff once.
      const id = c.commit + ':' + c.n;
      if (seen.has(id)) continue;
      seen.add(id);
      const li = el('li', { class: 'change' + (c.restated ? ' restated' : ''), 'data-portfolio': c.portfolio, 'data-id': id },
        el('span', { class: 'muted' }, '#' + c.commit + ' '),
        el('span', { class: 'badge' + (c.diff < 0 ? ' retract' : '') }, c.diff < 0 ? '− retract' : '+ insert'), ' ',
        c.restated ? el('span', { class: 'badge restated' }, 'restated') : '', ' ',
        el('a', { href: '/portfolios/' + encodeURIComponent(c.portfolio) }, c.portfolio), ' ',
        c.day, ' · ', c.value,
        c.change_pct !== null ? el('span', { class: sign(c.change_pct) }, ' (' + c.change_pct + ' %)') : '');
      streamList.prepend(li);
      shown.push(li);
    }
    while (shown.length > MAX_SHOWN) shown.shift().remove();
    if (seen.size > 5 * MAX_SHOWN) { seen.clear(); for (const li of shown) seen.add(li.dataset.id); }
    const dropped = (commits || []).reduce((n, c) => n + (c.inserted + c.retracted - c.kept), 0);
    streamInfo.textContent = `Evaluation diffs as commits land, newest first; a restated day (its earlier evaluation retracted) is marked. ` +
      `Bounded: the last ${MAX_SHOWN} shown, at most 500 kept per commit` + (dropped > 0 ? ` (${fmtInt(dropped)} diffs of the latest commits not kept).` : '.');
  }
  try {
    const initial = await api('/api/changes?limit=200');
    addChanges(initial.changes, initial.commits);
  } catch (e) { streamInfo.replaceChildren(errorBox(e)); }
  // Sparklines of the rows commits touched: fetched again at most every 5 s.
  const stale = new Set();
  every(gen, 5000, async () => {
    if (!stale.size) return;
    const ids = [...stale]; stale.clear();
    try {
      const svgs = await api('/api/sparklines?' + new URLSearchParams({ ids: ids.join(',') }));
      for (const [p, svg] of Object.entries(svgs)) {
        const r = rows.get(p);
        if (r) r.cells.spark.replaceChildren(svgImage(svg, { alt: 'last 60 days of ' + p, width: 120, height: 28 }));
      }
    } catch (e) { /* the next commit tries again */ }
  });
  // A commit larger than what an event carries may touch rows it does not list: the page is
  // read again, at most every 5 s.
  let reload = null;
  onCommit(gen, (ev) => {
    addChanges(ev.changes, ev.commits);
    if (!reload && ev.commits.some((c) => c.inserted + c.retracted > c.kept)) {
      reload = setTimeout(() => { reload = null; if (gen === state.gen) load(); }, 5000);
    }
    for (const [p, latest] of Object.entries(ev.latest)) {
      const r = rows.get(p);
      if (!r) continue;
      fill(r.cells, latest);
      r.tr.classList.remove('flash'); void r.tr.offsetWidth; r.tr.classList.add('flash');
      stale.add(p);
    }
  });
  await load();
}

// ---------------------------------------------------------------- one portfolio
async function portfolioPage(main, id) {
  const gen = state.gen;
  const head = el('h1', {}, id);
  const latestBox = el('p', { id: 'latest' });
  const img = el('img', { id: 'chart-img', alt: 'value of ' + id });
  const sel = el('div', { class: 'sel' });
  const chartBox = el('div', { class: 'chart', id: 'chart' }, img, sel);
  const logBox = el('input', { type: 'checkbox', id: 'log' });
  const windowInfo = el('span', { class: 'muted', id: 'window' });
  const report = el('pre', { id: 'report' });
  const restate = el('div', { id: 'restatements' });
  const changes = el('ul', { id: 'portfolio-changes' });
  const formBox = el('div', { id: 'holdings-form' });
  const buttons = ['1Y', '5Y', '10Y', 'All'].map((label) => el('button', { 'data-range': label }, label));
  main.replaceChildren(
    head, latestBox, restate,
    el('section', { class: 'card' },
      el('div', { class: 'toolbar' }, ...buttons, el('label', {}, logBox, ' log scale'), windowInfo,
        el('span', { class: 'muted' }, 'Drag across the chart to zoom; double-click to see everything.')),
      chartBox,
      el('p', { class: 'muted' }, 'Green: each year\'s max daily change day; red: its min daily change day.')),
    el('div', { class: 'grid' },
      el('section', { class: 'card' }, el('h2', {}, 'The five statistics (as in stockflow report)'), report,
        el('p', {}, 'Download the history: ',
          el('a', { id: 'csv', href: `/api/portfolios/${encodeURIComponent(id)}/download?format=csv` }, 'CSV'), ' · ',
          el('a', { id: 'parquet', href: `/api/portfolios/${encodeURIComponent(id)}/download?format=parquet` }, 'Parquet'))),
      el('section', { class: 'card' }, el('h2', {}, 'Change holdings'), formBox,
        el('h2', {}, 'Latest diffs of this portfolio'), el('div', { class: 'stream' }, changes))));

  let meta;
  let win = { from: null, to: null };
  async function loadMeta() {
    try { meta = await api('/api/portfolios/' + encodeURIComponent(id)); } catch (e) {
      if (gen === state.gen) main.replaceChildren(head, errorBox(e));
      return false;
    }
    head.textContent = `${meta.portfolio} · ${meta.name}`;
    const inv = meta.investor || {};
    const l = meta.latest;
    latestBox.replaceChildren(
      el('span', { class: 'muted' }, `${inv.id || ''} ${inv.name || ''} (${inv.city || ''}) · ${fmtInt(meta.days)} days, ${meta.first_day || '–'} .. ${meta.last_day || '–'} · `),
      l ? el('span', {}, 'latest ', el('b', {}, l.day), ': ', el('b', { id: 'latest-value' }, l.value),
        l.change !== null ? el('span', { class: sign(l.change) }, ` ${l.change} (${l.change_pct} %)`) : '') : 'no evaluation yet');
    report.textContent = meta.report ? meta.report.text : 'No evaluation yet: run the pipeline (stockflow run).';
    return true;
  }
  // Answers can come back out of order (a commit's refresh, then a zoom): only the latest
  // request's is shown.
  let chartSeq = 0;
  async function loadChart() {
    if (!meta || !meta.first_day) return;
    const seq = ++chartSeq;
    const width = Math.max(600, Math.min(2000, Math.round(chartBox.clientWidth || 1000)));
    const p = { log: logBox.checked, width, height: 420 };
    if (win.from) p.from = win.from;
    if (win.to) p.to = win.to;
    try {
      const c = await api(`/api/portfolios/${encodeURIComponent(id)}/chart?` + new URLSearchParams(p));
      if (seq !== chartSeq) return;
      img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(c.svg);
      img.dataset.from = c.from; img.dataset.to = c.to; img.dataset.left = c.left; img.dataset.right = c.right; img.dataset.width = c.width;
      windowInfo.textContent = `${c.from} .. ${c.to} · ${fmtInt(c.points)} days` + (c.log ? ' · log scale' : '') +
        (c.not_positive ? ` · ${c.not_positive} days ≤ 0 left out of the log scale` : '');
    } catch (e) { windowInfo.replaceChildren(errorBox(e)); }
  }
  function dayAt(clientX) {
    const r = img.getBoundingClientRect();
    const scale = Number(img.dataset.width) / r.width;
    const px = (clientX - r.left) * scale;
    const left = Number(img.dataset.left), right = Number(img.dataset.right);
    const f = Math.min(1, Math.max(0, (px - left) / (right - left)));
    const a = Date.parse(img.dataset.from), b = Date.parse(img.dataset.to);
    return new Date(a + f * (b - a)).toISOString().slice(0, 10);
  }
  let dragFrom = null;
  chartBox.addEventListener('mousedown', (e) => { dragFrom = e.clientX; sel.style.display = 'none'; e.preventDefault(); });
  chartBox.addEventListener('mousemove', (e) => {
    if (dragFrom === null) return;
    const r = chartBox.getBoundingClientRect();
    const a = Math.min(dragFrom, e.clientX) - r.left, b = Math.max(dragFrom, e.clientX) - r.left;
    sel.style.left = a + 'px'; sel.style.width = (b - a) + 'px'; sel.style.display = 'block';
  });
  window.addEventListener('mouseup', (e) => {
    if (dragFrom === null) return;
    const a = dragFrom; dragFrom = null; sel.style.display = 'none';
    if (Math.abs(e.clientX - a) < 5) return;
    const d1 = dayAt(Math.min(a, e.clientX)), d2 = dayAt(Math.max(a, e.clientX));
    if (d1 < d2) { win = { from: d1, to: d2 }; loadChart(); }
  }, { signal: state.abort.signal });
  chartBox.addEventListener('dblclick', () => { win = { from: null, to: null }; loadChart(); });
  logBox.onchange = loadChart;
  for (const b of buttons) {
    b.onclick = () => {
      const years = { '1Y': 1, '5Y': 5, '10Y': 10 }[b.dataset.range];
      if (!years || !meta.last_day) { win = { from: null, to: null }; }
      else {
        const to = new Date(meta.last_day);
        const from = new Date(to); from.setFullYear(to.getFullYear() - years);
        win = { from: from.toISOString().slice(0, 10), to: meta.last_day };
      }
      loadChart();
    };
  }

  const seenHere = new Set();
  function addChange(c) {
    const key = c.commit + ':' + c.n;
    if (seenHere.has(key)) return;
    seenHere.add(key);
    changes.prepend(el('li', { class: 'change' + (c.restated ? ' restated' : '') },
      el('span', { class: 'muted' }, '#' + c.commit + ' '),
      el('span', { class: 'badge' + (c.diff < 0 ? ' retract' : '') }, c.diff < 0 ? '− retract' : '+ insert'), ' ',
      c.restated ? el('span', { class: 'badge restated' }, 'restated') : '', ' ', c.day, ' · ', c.value));
    while (changes.children.length > 300) changes.lastChild.remove();
  }

  // The holdings form (with --allow-holdings-changes): publishes a holdings record.
  const s = state.session;
  if (!s.holdings_changes) {
    formBox.replaceChildren(el('p', { class: 'muted' }, 'Read-only: start the console with --allow-holdings-changes to change a holding from here (it publishes a record to the holdings topic, as stockflow holdings set does).'));
  } else {
    const ticker = el('select', { name: 'ticker', id: 'h-ticker' }, ...s.tickers.map((t) => el('option', { value: t }, t)));
    const qty = el('input', { type: 'number', name: 'quantity', id: 'h-qty', min: 0, step: 1, required: true, value: 100 });
    const from = el('input', { type: 'date', name: 'from', id: 'h-from', required: true, value: meta && meta.first_day ? meta.first_day : '' });
    const result = el('div', { id: 'h-result' });
    const form = el('form', { class: 'holdings', id: 'holdings' },
      el('label', {}, 'Stock', ticker), el('label', {}, 'Shares', qty), el('label', {}, 'From (trading day)', from),
      el('button', { type: 'submit', id: 'h-submit' }, 'Publish change'));
    const submit = form.querySelector('#h-submit');
    form.onsubmit = async (e) => {
      e.preventDefault();
      // One change at a time: the next waits for this one's answer (a change being sent again
      // after an outage must not be overtaken by a later one).
      if (submit.disabled) return;
      submit.disabled = true;
      submit.textContent = 'Publishing…';
      const record = { PORTFOLIO: id, TICK: ticker.value, QTY: Number(qty.value), FROM: from.value };
      try {
        const r = await api('/api/holdings', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf },
          body: JSON.stringify(record),
        });
        result.replaceChildren(el('div', { class: 'notice', id: 'h-published' },
          `Published to ${r.topic} (partition ${r.partition}, offset ${r.offset}): ${id} holds ${r.published.quantity} ${r.published.ticker} from ${r.published.from}. Waiting for the job to restate the history…`));
      } catch (err) { result.replaceChildren(errorBox(err)); } finally {
        submit.disabled = false;
        submit.textContent = 'Publish change';
      }
    };
    formBox.replaceChildren(form, result);
  }

  if (!(await loadMeta())) return;
  loadChart();
  try {
    const initial = await api('/api/changes?limit=1000');
    initial.changes.filter((c) => c.portfolio === id).sort((a, b) => a.commit - b.commit || b.n - a.n).forEach(addChange);
  } catch (e) { /* the stream panel stays empty */ }
  onCommit(gen, async (ev) => {
    const mine = ev.changes.filter((c) => c.portfolio === id);
    if (!mine.length && !ev.latest[id]) return;
    mine.slice().sort((a, b) => a.commit - b.commit || b.n - a.n).forEach(addChange);
    const restated = new Set(mine.filter((c) => c.restated).map((c) => c.day));
    if (restated.size) {
      restate.replaceChildren(el('div', { class: 'notice', id: 'restated-notice' },
        `Commit #${ev.last_commit} restated ${fmtInt(restated.size)} day(s) of ${id}'s history` +
        '. The chart and the statistics below are updated.'));
    }
    await loadMeta();
    loadChart();
  });
}

// ---------------------------------------------------------------- the job
async function jobPage(main) {
  const gen = state.gen;
  const body = el('div', { id: 'job' });
  main.replaceChildren(el('h1', {}, 'The job'), body);
  const dead = el('section', { class: 'card', id: 'dead-letters' });
  let deadBefore = null;
  const deadPages = [];
  async function loadDead() {
    try {
      const q = { size: 20 };
      if (deadBefore !== null) q.before = deadBefore;
      const d = await api('/api/dead-letters?' + new URLSearchParams(q));
      const older = el('button', { id: 'dead-older', disabled: d.next_before === null }, 'Older →');
      const newer = el('button', { id: 'dead-newer', disabled: !deadPages.length }, '← Newer');
      older.onclick = () => { deadPages.push(deadBefore); deadBefore = d.next_before; loadDead(); };
      newer.onclick = () => { deadBefore = deadPages.pop(); loadDead(); };
      dead.replaceChildren(el('h2', {}, `Dead letters (${fmtInt(d.total)})`),
        el('div', { class: 'toolbar' }, newer, older),
        el('table', {}, el('thead', {}, el('tr', {}, ...['#', 'Where', 'Code', 'Reason', 'Payload', 'Bytes', 'Received'].map((h) => el('th', {}, h)))),
          el('tbody', {}, ...d.rows.map((r) => el('tr', { class: 'dead-letter', 'data-id': r.id },
            el('td', {}, r.id), el('td', {}, `${r.topic}/${r.partition}@${r.offset}`), el('td', {}, el('span', { class: 'badge' }, r.code)),
            el('td', { class: 'reason' }, r.reason),
            el('td', { class: 'payload-cell' }, el('code', { class: 'payload' }, r.preview + (r.preview_truncated ? ' …' : ''))),
            el('td', { class: 'num' }, fmtInt(r.payload_len)), el('td', { class: 'muted' }, r.received_at))))));
    } catch (e) { dead.replaceChildren(el('h2', {}, 'Dead letters'), errorBox(e)); }
  }
  async function load() {
    let j;
    try { j = await api('/api/job'); } catch (e) { body.replaceChildren(errorBox(e)); return; }
    const l = j.lease;
    const lease = el('section', { class: 'card', id: 'lease' }, el('h2', {}, 'Lease'),
      l ? el('p', { class: l.live ? 'lease-held' : 'lease-free' }, `Job ${j.job}: ${l.describe}; ` +
        (l.live ? 'a live run holds it' : 'no live run holds it') + `; last commit ${fmtInt(l.commit_seq)}.`)
        : el('p', { class: 'muted' }, `Job ${j.job} has never held a lease on this database.`));
    const parts = el('section', { class: 'card', id: 'partitions' }, el('h2', {}, `Partitions (${j.log})`),
      ...j.log_errors.map((e) => el('div', { class: 'error' }, e)),
      el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Topic'), el('th', { class: 'num' }, 'Partition'), el('th', { class: 'num' }, 'Start'),
        el('th', { class: 'num' }, 'Committed'), el('th', { class: 'num' }, 'End'), el('th', { class: 'num' }, 'Lag'))),
        el('tbody', {}, ...j.partitions.map((p) => el('tr', {}, el('td', {}, p.topic), el('td', { class: 'num' }, p.partition),
          el('td', { class: 'num' }, fmtInt(p.start)), el('td', { class: 'num' }, fmtInt(p.committed)), el('td', { class: 'num' }, fmtInt(p.end)),
          el('td', { class: 'num lag' }, fmtInt(p.lag)))))));
    const graph = el('section', { class: 'card graph', id: 'graph' }, el('h2', {}, 'Dataflow'), drawGraph(j.graph),
      el('p', { class: 'muted' }, j.graph.source + (j.graph.sampled_ago_s !== null && j.graph.sampled_ago_s !== undefined ? ` · sampled ${j.graph.sampled_ago_s.toFixed(1)} s ago` : '')));
    const fresh = el('section', { class: 'card svgchart', id: 'freshness' }, el('h2', {}, 'Freshness: publish → commit, p50 and p99 per interval'),
      j.freshness.length ? svgImage(j.freshness_svg, { alt: 'freshness over time' }) : el('p', { class: 'muted' }, 'No commit with new records yet.'));
    const commits = el('section', { class: 'card svgchart', id: 'commits' }, el('h2', {}, 'Commits'),
      j.commits.length ? svgImage(j.commits_svg, { alt: 'commit durations' }) : '',
      el('div', { class: 'stream' }, el('table', {}, el('thead', {}, el('tr', {}, ...['#', 'Epoch', 'At', 'Inserted', 'Retracted', 'Restated days', 'Days', 'State rows', 'Dead letters', 'Duration', 'Freshness'].map((h) => el('th', {}, h)))),
        el('tbody', {}, ...j.commits.slice().reverse().map((c) => el('tr', {},
          el('td', {}, c.commit), el('td', {}, c.epoch), el('td', {}, new Date(c.at_ms).toLocaleTimeString()),
          el('td', { class: 'num' }, fmtInt(c.inserted)), el('td', { class: 'num' }, fmtInt(c.retracted)),
          el('td', { class: 'num' }, c.restated ? el('span', { class: 'badge restated' }, fmtInt(c.restated)) : '0'),
          el('td', {}, c.first_day ? (c.first_day === c.last_day ? c.first_day : `${c.first_day} .. ${c.last_day}`) : '–'),
          el('td', { class: 'num' }, fmtInt(c.state_rows)), el('td', { class: 'num' }, fmtInt(c.dead_letters)),
          el('td', { class: 'num' }, fmtInt(c.duration_ms) + ' ms'), el('td', { class: 'num' }, c.freshness_ms === null ? '–' : fmtInt(c.freshness_ms) + ' ms')))))));
    const inc = el('section', { class: 'card', id: 'incomplete' }, el('h2', {}, `Incomplete days (${fmtInt(j.incomplete.total)})`),
      j.incomplete.latest.length ? el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Portfolio'), el('th', {}, 'Day'), el('th', {}, 'Priced / held'), el('th', {}, 'No close for'))),
        el('tbody', {}, ...j.incomplete.latest.map((i) => el('tr', {}, el('td', {}, i.portfolio), el('td', {}, i.day), el('td', {}, `${i.priced} / ${i.held}`), el('td', {}, i.missing.join(', '))))))
        : el('p', { class: 'muted' }, 'Every portfolio-day with inputs has an evaluation.'));
    body.replaceChildren(graph, lease, parts, fresh, commits, inc, dead);
  }
  await load();
  await loadDead();
  // Commits refresh the page at most every 2 s (the server shares one answer a second among
  // its clients); new dead letters refresh their list, if it shows the newest.
  let pending, deadPending = false;
  onCommit(gen, (ev) => {
    if (ev.commits.some((c) => c.dead_letters > 0) && deadBefore === null) deadPending = true;
    if (!pending) pending = setTimeout(async () => {
      pending = null; await load();
      if (deadPending) { deadPending = false; await loadDead(); }
    }, 2000);
  });
  every(gen, 5000, () => { if (!pending) load(); });
}

function drawGraph(g) {
  const NS = 'http://www.w3.org/2000/svg';
  const mk = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const colW = 168, rowH = 62, boxW = 140, boxH = 46;
  const pos = new Map();
  for (const n of g.nodes) pos.set(n.id, { x: 10 + n.column * colW, y: 10 + n.row * rowH, n });
  const cols = Math.max(...g.nodes.map((n) => n.column)) + 1, rows = Math.max(...g.nodes.map((n) => n.row)) + 1;
  const svg = mk('svg', { viewBox: `0 0 ${cols * colW} ${20 + rows * rowH}`, id: 'graph-svg' });
  const defs = mk('defs', {});
  const marker = mk('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' });
  marker.append(mk('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#98a2b3' }));
  defs.append(marker); svg.append(defs);
  for (const [a, b] of g.edges) {
    const p = pos.get(a), q = pos.get(b);
    svg.append(mk('line', { x1: p.x + boxW, y1: p.y + boxH / 2, x2: q.x, y2: q.y + boxH / 2, stroke: '#98a2b3', 'marker-end': 'url(#arrow)' }));
  }
  const max = Math.max(1, ...g.nodes.map((n) => n.per_second || 0));
  for (const { x, y, n } of pos.values()) {
    const busy = (n.per_second || 0) / max;
    const group = mk('g', { class: 'node', 'data-node': n.id });
    group.append(mk('rect', { x, y, width: boxW, height: boxH, rx: 6, fill: `rgba(29,78,216,${0.08 + 0.5 * busy})`, stroke: '#1d4ed8' }));
    group.append(mk('text', { x: x + 8, y: y + 18, 'font-size': 12, 'font-weight': 600 }, n.label));
    const rate = n.per_second === null || n.per_second === undefined ? '–' : Math.round(n.per_second).toLocaleString('en-US');
    group.append(mk('text', { x: x + 8, y: y + 36, 'font-size': 11, fill: '#475467' }, `${rate} ${n.unit}/s`));
    const title = mk('title', {}, `${n.label}: ${n.total === null || n.total === undefined ? 'no figure' : Math.round(n.total).toLocaleString('en-US') + ' ' + n.unit + ' in all'}`);
    group.append(title);
    svg.append(group);
  }
  return svg;
}

// ---------------------------------------------------------------- routing
async function route() {
  const main = document.getElementById('main');
  state.gen += 1;
  state.listeners.clear();
  state.timers.forEach(clearInterval); state.timers = [];
  state.abort.abort(); state.abort = new AbortController();
  const path = location.pathname;
  document.getElementById('nav-portfolios').className = path === '/' || path.startsWith('/portfolios') ? 'current' : '';
  document.getElementById('nav-job').className = path === '/job' ? 'current' : '';
  try {
    if (path === '/job') await jobPage(main);
    else if (path.startsWith('/portfolios/')) await portfolioPage(main, decodeURIComponent(path.slice('/portfolios/'.length)));
    else await portfoliosPage(main);
    document.body.dataset.ready = 'true';
  } catch (e) { main.replaceChildren(errorBox(e)); }
}

(async function start() {
  try { state.session = await api('/api/session'); } catch (e) { document.getElementById('main').replaceChildren(errorBox(e)); return; }
  connect();
  await route();
})();
