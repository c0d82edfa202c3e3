// kiln dashboard: one script for every page. It fetches JSON from
// /api/v1/dashboard/, builds the page with DOM calls (never HTML strings, so
// addresses and reply lines cannot inject markup), draws charts as SVG, and
// polls for fresh data.
'use strict';

(() => {
  const body = document.body;
  const PAGE = body.dataset.page || 'overview';
  const REFRESH = Math.max(500, Number(body.dataset.refresh) || 5000);
  const main = document.getElementById('main');
  const statusEl = document.getElementById('status');
  let csrf = '';

  // ---- DOM helpers ----

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(e, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function replace(node, ...children) {
    node.replaceChildren();
    append(node, children);
  }

  // ---- formatting ----

  function fmtNum(n) {
    if (n === undefined || n === null) return '–';
    if (n < 0) return 'none';
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + 'M';
    if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + 'k';
    return String(n);
  }
  const fmtInt = (n) => (n < 0 ? 'none' : Number(n).toLocaleString('en-US'));
  const isZero = (t) => !t || t.startsWith('0001-');
  function fmtTime(t, withDate) {
    if (isZero(t)) return '';
    const s = new Date(t).toISOString();
    return (withDate ? s.slice(5, 10) + ' ' : '') + s.slice(11, 16);
  }
  function fmtStamp(t) {
    if (isZero(t)) return '';
    return new Date(t).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
  }
  function fmtAgo(t, now) {
    if (isZero(t)) return '';
    const s = Math.round(((now ? new Date(now) : new Date()) - new Date(t)) / 1000);
    const a = Math.abs(s);
    const v = a < 90 ? a + 's' : a < 5400 ? Math.round(a / 60) + 'm' : a < 172800 ? Math.round(a / 3600) + 'h' : Math.round(a / 86400) + 'd';
    return s >= 0 ? v + ' ago' : 'in ' + v;
  }
  const pct = (x) => (x * 100).toFixed(x < 0.01 ? 2 : 1) + '%';
  function fmtStep(sec) {
    return sec % 86400 === 0 ? sec / 86400 + ' d' : sec % 3600 === 0 ? sec / 3600 + ' h' : sec / 60 + ' min';
  }

  // ---- API ----

  class APIError extends Error {}

  async function api(path, opts = {}) {
    const init = { credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (opts.body !== undefined) {
      init.method = 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.headers['X-Kiln-CSRF'] = csrf;
      init.body = JSON.stringify(opts.body);
    }
    const res = await fetch(path.startsWith('/') ? path : '/api/v1/dashboard/' + path, init);
    if (res.status === 401) {
      location.assign('/dashboard/login?error=expired&next=' + encodeURIComponent(location.pathname));
      throw new APIError('not logged in');
    }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      throw new APIError((data.error && data.error.message) || res.status + ' ' + res.statusText);
    }
    return data;
  }

  function setStatus(msg, isErr) {
    statusEl.textContent = msg;
    statusEl.classList.toggle('err', !!isErr);
  }

  // ---- charts ----

  // niceScale rounds a maximum up to 1, 2 or 5 times a power of ten and
  // picks the grid lines: fives of a 1 or 5, fours of a 2.
  function niceScale(v) {
    if (!(v > 0)) v = 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) {
      if (v <= m * p + 1e-9) {
        const max = m * p;
        const n = m === 2 ? 4 : 5;
        return { max, ticks: Array.from({ length: n + 1 }, (_, k) => (max * k) / n) };
      }
    }
    return { max: 10 * p, ticks: [0, 2, 4, 6, 8, 10].map((k) => k * p) };
  }

  // yAxis draws the horizontal grid and its labels.
  function yAxis(g, scale, y, x1, x2) {
    for (const v of scale.ticks) {
      g.append(svg('line', { x1, x2, y1: y(v), y2: y(v) }),
        svg('text', { x: x1 - 6, y: y(v) + 4, 'text-anchor': 'end', text: fmtNum(v) }));
    }
  }

  // timeTicks returns the round times (unix seconds) to label between
  // start and end: at most six, on a round interval.
  function timeTicks(start, end) {
    const span = end - start;
    const steps = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
    const every = steps.find((c) => span / c <= 6) || 604800;
    const out = [];
    for (let t = Math.ceil(start / every) * every; t <= end; t += every) out.push(t);
    return out;
  }

  // lineChart draws one line per series over the same time steps: a path
  // with one point per data point (data-points says how many).
  function lineChart(series, start, step) {
    const W = 900, H = 260, L = 52, R = 14, T = 12, B = 28;
    const pw = W - L - R, ph = H - T - B;
    const n = series.length ? series[0].points.length : 0;
    const scale = niceScale(Math.max(0, ...series.flatMap((s) => s.points)));
    const x = (i) => L + (n <= 1 ? pw / 2 : (i * pw) / (n - 1));
    const y = (v) => T + ph - (v / scale.max) * ph;
    const root = svg('svg', { class: 'chart line-chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-points': n });
    const grid = svg('g', { class: 'grid axis' });
    yAxis(grid, scale, y, L, W - R);
    const t0 = new Date(start).getTime();
    const first = t0 / 1000, last = first + (n - 1) * step;
    const days = n * step > 86400;
    for (const t of n > 1 ? timeTicks(first, last) : []) {
      const at = x((t - first) / step);
      const anchor = at - L < 30 ? 'start' : W - R - at < 30 ? 'end' : 'middle';
      grid.append(svg('line', { class: 'tick', x1: at, x2: at, y1: T + ph, y2: T + ph + 4 }),
        svg('text', { x: at, y: H - 8, 'text-anchor': anchor, text: days && t % 86400 === 0 ? new Date(t * 1000).toISOString().slice(5, 10) : fmtTime(new Date(t * 1000).toISOString(), days && t % 86400 !== 0) }));
    }
    root.append(grid);
    for (const s of series) {
      const d = s.points.map((v, i) => (i ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1)).join(' ');
      root.append(svg('path', { class: 'line ' + s.type, d: d || 'M0 0', 'data-series': s.type, 'data-points': s.points.length }));
    }
    // One hit area per step, with the step's counts as a tooltip.
    const hits = svg('g', {});
    for (let i = 0; i < n; i++) {
      const w = n <= 1 ? pw : pw / (n - 1);
      const label = fmtTime(new Date(t0 + i * step * 1000).toISOString(), true) + ' UTC — ' +
        series.map((s) => s.type + ' ' + s.points[i]).join(', ');
      hits.append(svg('rect', { class: 'hit', x: x(i) - w / 2, y: T, width: w, height: ph }, svg('title', { text: label })));
    }
    root.append(hits);
    return root;
  }

  // capChart draws a warm-up's days: bars of what was sent, the cap as a
  // line through the recorded days and today, and the plan ahead dashed.
  function capChart(days) {
    const W = 560, H = 200, L = 48, R = 10, T = 14, B = 26;
    const pw = W - L - R, ph = H - T - B;
    const n = days.length;
    const scale = niceScale(Math.max(1, ...days.map((d) => Math.max(d.cap, d.sent))));
    const bw = pw / Math.max(n, 1);
    const cx = (i) => L + bw * (i + 0.5);
    const y = (v) => T + ph - (v / scale.max) * ph;
    const root = svg('svg', { class: 'chart cap-chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-days': n });
    const grid = svg('g', { class: 'grid axis' });
    yAxis(grid, scale, y, L, W - R);
    const ti = days.findIndex((d) => d.today);
    for (const i of new Set([0, ti, n - 1])) {
      if (i < 0 || i >= n || (i !== ti && Math.abs(i - ti) * bw < 40)) continue;
      grid.append(svg('text', { x: cx(i), y: H - 8, 'text-anchor': 'middle', text: days[i].today ? 'today' : days[i].date.slice(5) }));
    }
    root.append(grid);
    const bars = svg('g', { class: 'bars' });
    days.forEach((d, i) => {
      if (d.planned) return;
      const h = Math.max(0, ph - (y(d.sent) - T));
      bars.append(svg('rect', { class: 'sent' + (d.today ? ' today' : ''), x: cx(i) - bw * 0.35, y: y(d.sent), width: bw * 0.7,
        height: h, 'data-sent': d.sent }, svg('title', { text: `${d.date}: sent ${fmtInt(d.sent)} of ${d.cap < 0 ? 'no cap' : fmtInt(d.cap)}` })));
    });
    root.append(bars);
    // A path per part; a day without a cap breaks the line.
    const path = (pick, cls) => {
      let d = '', pen = false, count = 0;
      days.forEach((day, i) => {
        if (!pick(day) || day.cap < 0) { pen = false; return; }
        d += (pen ? ' L' : ' M') + cx(i).toFixed(1) + ' ' + y(day.cap).toFixed(1);
        pen = true;
        count++;
      });
      if (count) root.append(svg('path', { class: 'line ' + cls, d: d.trim(), 'data-series': cls, 'data-points': count }));
    };
    path((d) => !d.planned, 'cap');
    path((d) => d.planned || d.today, 'plan');
    for (let i = 0; i < n; i++) {
      const d = days[i];
      const tip = d.planned ? `${d.date}: planned cap ${fmtInt(d.cap)}` : `${d.date}: cap ${d.cap < 0 ? 'none' : fmtInt(d.cap)}, sent ${fmtInt(d.sent)}`;
      root.append(svg('rect', { class: 'hit', x: cx(i) - bw / 2, y: T, width: bw, height: ph }, svg('title', { text: tip })));
    }
    return root;
  }

  // barChart draws labelled horizontal bars, largest first.
  function barChart(items) {
    const W = 440, row = 22, L = 160, R = 56;
    const H = Math.max(row, items.length * row) + 4;
    const vmax = Math.max(1, ...items.map((d) => d.value));
    const root = svg('svg', { class: 'chart bar-chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-bars': items.length });
    items.forEach((d, i) => {
      const yy = i * row + 2;
      const label = d.label.length > 24 ? d.label.slice(0, 23) + '…' : d.label;
      root.append(
        svg('text', { class: 'bar-label', x: L - 8, y: yy + 15, 'text-anchor': 'end', text: label }, svg('title', { text: d.label })),
        svg('rect', { class: 'bar', x: L, y: yy + 3, height: row - 8, width: Math.max(1, ((W - L - R) * d.value) / vmax), 'data-value': d.value }),
        svg('text', { class: 'bar-value', x: L + ((W - L - R) * d.value) / vmax + 6, y: yy + 15, text: fmtInt(d.value) }));
    });
    return root;
  }

  // ---- small builders ----

  const card = (label, value, sub) =>
    el('div', { class: 'card' }, el('div', { class: 'label', text: label }), el('div', { class: 'value', text: value }),
      sub ? el('div', { class: 'sub', text: sub }) : null);

  function table(headers, rows, empty) {
    if (!rows.length) return el('p', { class: 'empty', text: empty || 'Nothing here.' });
    return el('table', {},
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', { class: h.num ? 'num' : null, text: h.label || h })))),
      el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c, i) =>
        c instanceof Node ? el('td', { class: headers[i].num ? 'num' : null }, c)
          : el('td', { class: headers[i].num ? 'num' : headers[i].wrap ? 'wrap' : null, text: c ?? '' }))))));
  }

  const badge = (s) => el('span', { class: 'badge ' + s, text: s });
  const countRows = (list) => list.map((c) => [c.value, fmtInt(c.count)]);

  // ---- pages ----

  const overview = {
    range: new URLSearchParams(location.search).get('range') || '6h',
    init() {
      const bar = el('div', { class: 'toolbar' }, el('h2', { class: 'grow', text: 'Overview' }));
      for (const r of ['1h', '6h', '24h', '48h', '7d', '30d']) {
        bar.append(el('button', { type: 'button', 'data-range': r, 'aria-pressed': String(r === this.range), text: r,
          onclick: () => { this.range = r; bar.querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.range === r))); refresh(); } }));
      }
      this.cards = el('div', { class: 'cards' });
      this.chart = el('div', {});
      this.caption = el('div', { class: 'legend' });
      this.tables = el('div', { class: 'grid' });
      main.append(bar, this.cards,
        el('div', { class: 'panel' }, el('h3', { text: 'Delivered, deferred and bounced' }), this.caption, this.chart),
        this.tables);
    },
    async refresh() {
      const o = await api('overview?range=' + encodeURIComponent(this.range));
      const t = o.totals;
      const attempts = t.delivered + t.deferred + t.bounced;
      const rate = (n) => (attempts ? pct(n / attempts) + ' of attempts' : '');
      const q = o.queue || {};
      replace(this.cards,
        card('Received', fmtInt(t.received), 'messages'),
        card('Delivered', fmtInt(t.delivered), rate(t.delivered)),
        card('Deferred', fmtInt(t.deferred), rate(t.deferred)),
        card('Bounced', fmtInt(t.bounced), rate(t.bounced)),
        card('Complaints', fmtInt(t.spamreport), pct(o.complaint_rate) + ' of delivered'),
        card('Suppressed', fmtInt(t.suppressed), fmtInt(t.unsubscribe) + ' unsubscribes'),
        card('Queue', fmtInt(q.total || 0), fmtInt(q.held || 0) + ' held · ' + fmtAgo(q.as_of, o.now)));
      const s0 = o.series[0];
      replace(this.caption, ...o.series.map((s) => el('span', {}, el('i', { class: s.type }), `${s.type} ${fmtInt(s.total)}`)),
        el('span', { text: `per ${fmtStep(s0.step)}, UTC` }));
      replace(this.chart, lineChart(o.series, s0.start, s0.step));
      replace(this.tables,
        el('div', { class: 'panel' }, el('h3', { text: 'Bounce reasons' }), table(['reason', { label: 'bounces', num: true }], countRows(o.bounce_reasons), 'No bounces.')),
        el('div', { class: 'panel' }, el('h3', { text: 'Deferral reasons' }), table(['reason', { label: 'deferrals', num: true }], countRows(o.deferral_reasons), 'No deferrals.')),
        el('div', { class: 'panel' }, el('h3', { text: 'Deliveries by provider' }), table(['site', { label: 'delivered', num: true }], countRows(o.sites), 'No deliveries.')));
    },
  };

  const queues = {
    init() {
      this.root = el('div', {});
      main.append(el('div', { class: 'toolbar' }, el('h2', { class: 'grow', text: 'Queues' })), this.root);
    },
    async refresh() {
      const q = await api('queues');
      const waiting = q.lanes.reduce((a, l) => a + l.waiting, 0);
      const domains = q.domains_available
        ? table(['domain', { label: 'pending recipients', num: true }], q.domains.map((d) => [d.domain, fmtInt(d.pending)]), 'No pending recipients.')
        : el('p', { class: 'note', text: 'Pending recipients by domain are not counted by this queue.' });
      replace(this.root,
        q.error ? el('p', { class: 'error', text: q.error }) : null,
        el('div', { class: 'cards' },
          card('Messages queued', fmtInt(q.total)),
          card('Held', fmtInt(q.held)),
          card('Waiting for capacity', fmtInt(waiting), 'recipients in lanes'),
          card('Counted', fmtAgo(q.as_of, q.now), `in ${q.took_ms.toFixed(1)} ms`)),
        el('div', { class: 'grid' },
          el('div', { class: 'panel' }, el('h3', { text: 'Waiting by provider' }),
            q.sites.length ? barChart(q.sites.slice(0, 25).map((s) => ({ label: s.site, value: s.waiting }))) : el('p', { class: 'empty', text: 'Nothing is waiting for capacity.' })),
          el('div', { class: 'panel' }, el('h3', { text: 'Pending by domain' }), domains)),
        el('div', { class: 'panel' }, el('h3', { text: 'Lanes (pool × site)' }),
          table(['pool', 'site', { label: 'waiting', num: true }], q.lanes.map((l) => [l.pool, l.site, fmtInt(l.waiting)]), 'No lanes.')));
    },
  };

  const warmup = {
    init() {
      this.head = el('div', { class: 'toolbar' }, el('h2', { class: 'grow', text: 'Warm-up' }));
      this.info = el('span', { class: 'note' });
      this.head.append(this.info);
      this.root = el('div', {});
      main.append(this.head, this.root);
    },
    async refresh() {
      const w = await api('warmup');
      this.info.textContent = `${w.date} · ${w.timezone} · window ${w.window} · ${w.days} days`;
      const now = w.time;
      replace(this.root,
        w.error ? el('p', { class: 'error', text: 'Store: ' + w.error }) : null,
        w.egress.length ? null : el('p', { class: 'empty', text: 'No egress is configured.' }),
        w.egress.map((e) => el('section', { class: 'egress', 'data-egress': e.name },
          el('h2', {}, e.name + ' ', el('span', { class: 'note mono', text: e.source }), ' ',
            e.warm ? badge('warm') : null, e.paused ? badge('paused') : null),
          el('p', { class: 'note', text: (e.warm ? 'warm: no warm-up caps, shaping only' : `plan ${e.plan || 'default'} · started ${e.start || '–'} · new sites start at day ${e.day}`) +
            (e.paused ? ` · paused ${isZero(e.paused_until) ? 'until resumed' : 'until ' + fmtStamp(e.paused_until)}` : '') }),
          e.sites.length ? el('div', { class: 'sites' }, e.sites.map((s) => this.site(s, now)))
            : el('p', { class: 'empty', text: 'No mail sent from this egress yet.' }))));
    },
    site(s, now) {
      const signal = s.last_signal ? `${s.last_signal} ${fmtAgo(s.last_signal_at, now)}` : 'none';
      const until = !isZero(s.paused_until) ? 'paused until ' + fmtStamp(s.paused_until)
        : !isZero(s.backoff_until) ? 'backing off until ' + fmtStamp(s.backoff_until) : '';
      return el('div', { class: 'panel site', 'data-site': s.site },
        el('h3', {}, s.site + (s.provider && s.provider !== s.site ? ` (${s.provider})` : '') + ' ', badge(s.state)),
        el('div', { class: 'legend' }, el('span', {}, el('i', { class: 'sent' }), 'sent'), el('span', {}, el('i', { class: 'cap' }), 'cap (dashed: plan)')),
        capChart(s.days),
        table(['', ''], [
          ['Plan day', s.plan_days ? `${s.day} of ${s.plan_days}` : 'warm'],
          ['Today', `${fmtInt(s.sent)} sent of ${s.cap < 0 ? 'no cap' : fmtInt(s.cap)}` + (s.left >= 0 ? `, ${fmtInt(s.left)} left` : '')],
          ['Pace', s.hourly < 0 ? 'unlimited' : fmtInt(s.hourly) + ' / hour'],
          ['Last signal', signal],
          ['Last change', s.cause ? `${s.cause} ${fmtAgo(s.cause_at, now)}` : '–'],
          ['Replies today', `${fmtInt(s.delivered)} delivered, ${fmtInt(s.deferred)} deferred, ${fmtInt(s.rate_limited)} rate-limited, ${fmtInt(s.blocked)} blocked, ${fmtInt(s.complaints)} complaints`],
          until ? ['State', until] : null,
        ].filter(Boolean)));
    },
  };

  const suppressions = {
    cursor: '',
    init() {
      this.text = el('input', { type: 'search', name: 'q', placeholder: 'address, @domain or prefix', 'aria-label': 'search' });
      this.account = el('input', { type: 'text', name: 'account', placeholder: 'account, or global (all)', 'aria-label': 'account' });
      const form = el('form', { class: 'toolbar', onsubmit: (ev) => { ev.preventDefault(); this.search(false); } },
        el('h2', { class: 'grow', text: 'Suppressions' }), this.text, this.account, el('button', { type: 'submit', class: 'primary', text: 'Search' }));
      this.msg = el('p', { class: 'note', role: 'status' });
      this.list = el('tbody', {});
      this.more = el('button', { type: 'button', hidden: true, text: 'More', onclick: () => this.search(true) });
      main.append(form, this.msg, el('div', { class: 'panel' }, el('table', {},
        el('thead', {}, el('tr', {}, ['address', 'account', 'reason', 'source', 'message', 'added', 'expires', ''].map((h) => el('th', { text: h })))),
        this.list), this.more));
    },
    // The list is searched on demand, not polled.
    refresh: null,
    async first() { await this.search(false); },
    async search(more) {
      const acct = this.account.value.trim();
      const p = new URLSearchParams({ q: this.text.value.trim() });
      if (acct === 'global') p.set('global', '1');
      else if (acct) p.set('account', acct);
      if (more && this.cursor) p.set('cursor', this.cursor);
      const r = await api('suppressions?' + p);
      if (!more) this.list.replaceChildren();
      for (const s of r.suppressions) this.list.append(this.row(s));
      this.cursor = r.next || '';
      this.more.hidden = !this.cursor;
      if (!more) this.msg.textContent = r.suppressions.length ? '' : 'No suppressed address matches.';
      body.dataset.renders = String(Number(body.dataset.renders || 0) + 1);
    },
    row(s) {
      const btn = el('button', { type: 'button', class: 'remove', text: 'Remove' });
      const tr = el('tr', { 'data-address': s.address },
        el('td', { class: 'mono', text: s.address }), el('td', { text: s.account || 'global' }), el('td', { text: s.reason || '' }),
        el('td', { text: [s.source, s.rule].filter(Boolean).join(' · '), title: s.reply || null }),
        el('td', {}, s.queue_id ? el('a', { href: '/dashboard/messages?id=' + encodeURIComponent(s.queue_id), class: 'mono', text: s.queue_id }) : ''),
        el('td', { text: fmtStamp(s.created) }), el('td', { text: isZero(s.expires) ? 'never' : fmtStamp(s.expires) }),
        el('td', {}, btn));
      // Two clicks: the first arms the button, so no dialog is needed.
      btn.addEventListener('click', async () => {
        if (!btn.classList.contains('danger')) {
          btn.classList.add('danger');
          btn.textContent = 'Confirm removal';
          return;
        }
        btn.disabled = true;
        try {
          await api('suppressions/remove', { body: { account: s.account || '', address: s.address } });
          tr.remove();
          this.msg.textContent = `Removed ${s.address}` + (s.account ? ` for ${s.account}` : '') + '.';
        } catch (err) {
          btn.disabled = false;
          this.msg.textContent = 'Could not remove: ' + err.message;
        }
      });
      return tr;
    },
  };

  const messages = {
    init() {
      const params = new URLSearchParams(location.search);
      this.input = el('input', { type: 'search', name: 'q', placeholder: 'queue id, recipient address or <message-id>', 'aria-label': 'lookup',
        value: params.get('id') || params.get('recipient') || params.get('message_id') || '' });
      const form = el('form', { class: 'toolbar', onsubmit: (ev) => {
        ev.preventDefault();
        history.replaceState(null, '', location.pathname + (this.query() ? '?' + this.query() : ''));
        refresh();
      } }, el('h2', { class: 'grow', text: 'Messages' }), this.input, el('button', { type: 'submit', class: 'primary', text: 'Look up' }));
      this.root = el('div', {});
      main.append(form, this.root);
    },
    query() {
      const v = this.input.value.trim();
      if (!v) return '';
      const key = v.startsWith('<') ? 'message_id' : v.includes('@') ? 'recipient' : 'id';
      return new URLSearchParams({ [key]: v }).toString();
    },
    async refresh() {
      const q = this.query();
      if (!q) {
        replace(this.root, el('p', { class: 'note', text: 'Look a message up by its queue id, a recipient, or its Message-ID header.' }));
        return;
      }
      let r;
      try {
        r = await api('messages?' + q);
      } catch (err) {
        replace(this.root, el('p', { class: 'empty', text: err.message }));
        return;
      }
      const m = r.message;
      const link = (id) => el('a', { href: '/dashboard/messages?id=' + encodeURIComponent(id), class: 'mono', text: id });
      replace(this.root,
        m ? el('div', { class: 'panel' },
          el('h3', {}, 'Queued message ', el('span', { class: 'mono', text: m.id }), ' ', badge(m.state)),
          el('p', { class: 'note', text: `from ${m.from || '<>'} · account ${m.account || '–'} · ${m.attempts} attempts · created ${fmtStamp(m.created)} · expires ${fmtStamp(m.expires)}` }),
          table(['recipient', 'state', { label: 'attempts', num: true }, 'next attempt', 'reason', { label: 'last reply', wrap: true }],
            m.recipients.map((x) => [x.address, badge(x.state), String(x.attempts), fmtStamp(x.next_attempt), x.reason || (x.waiting_in ? 'waiting in ' + x.waiting_in : ''), x.last_reply || '']))) : null,
        el('div', { class: 'panel' }, el('h3', { text: `Events (${r.events.length}${r.next ? '+' : ''})` }),
          table(['time', 'type', 'id', 'recipient', 'reason', 'site', 'egress', { label: 'reply', wrap: true }],
            r.events.map((e) => [fmtStamp(e.time), badge(e.type), e.id ? link(e.id) : '', e.recipient || '', e.reason || '', e.site || '', e.egress || '', e.reply || e.detail || '']),
            'No events recorded.')));
    },
  };

  const pages = { overview, queues, warmup, suppressions, messages };

  // ---- polling ----

  const page = pages[PAGE] || overview;
  let timer = 0;
  let busy = false;

  async function refresh() {
    clearTimeout(timer);
    if (busy) return;
    busy = true;
    try {
      await page.refresh();
      body.dataset.renders = String(Number(body.dataset.renders || 0) + 1);
      setStatus('Updated ' + new Date().toISOString().slice(11, 19) + ' UTC');
    } catch (err) {
      if (!(err instanceof APIError && err.message === 'not logged in')) setStatus(err.message, true);
    } finally {
      busy = false;
      timer = setTimeout(refresh, REFRESH);
    }
  }

  async function start() {
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.page === PAGE) a.setAttribute('aria-current', 'page');
    }
    document.getElementById('logout').addEventListener('click', async () => {
      try { await api('/dashboard/logout', { body: {} }); } catch (err) { /* gone already */ }
      location.assign('/dashboard/login');
    });
    try {
      const s = await api('session');
      csrf = s.csrf || '';
    } catch (err) {
      setStatus(err.message, true);
      return;
    }
    page.init();
    if (page.refresh) {
      refresh();
    } else {
      try {
        await page.first();
        setStatus('');
      } catch (err) {
        setStatus(err.message, true);
      }
    }
  }

  start();
})();
