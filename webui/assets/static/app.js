// Shared by the master and the agent pages: building DOM, formatting Mesos
// values, fetching JSON and hash routing. Plain browser JavaScript, no
// framework and nothing fetched from elsewhere: the binary carries it all.
'use strict';

const ML = (() => {
  const body = document.body;
  const config = {
    app: body.dataset.app,
    title: body.dataset.title || 'mesolite',
    stateURL: body.dataset.stateUrl,
    filesURL: body.dataset.filesUrl || '/files',
    refreshMS: Number(body.dataset.refreshMs) || 2000,
  };

  // h builds an element. attrs: class, dataset (an object), on<event>
  // (a listener), true for a bare attribute; null, undefined and false are
  // left out, as are such children. Children may be nested arrays.
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'dataset') Object.assign(el.dataset, v);
        else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else if ((k === 'href' || k === 'src') && !safeURL(v)) continue;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    add(el, kids);
    return el;
  }

  // safeURL reports whether u may become an href or src: it resolves (as
  // the browser would) to http or https. Frameworks and agents choose some
  // of the URLs the pages show (webui_url); a javascript: one would run in
  // this page's origin when clicked. Every link goes through h, so this is
  // the one place that decides.
  function safeURL(u) {
    try {
      const p = new URL(String(u), location.href).protocol;
      return p === 'http:' || p === 'https:';
    } catch (e) {
      return false;
    }
  }

  function add(el, kids) {
    for (const k of kids) {
      if (k === undefined || k === null || k === false) continue;
      if (Array.isArray(k)) add(el, k);
      else if (k instanceof Node) el.appendChild(k);
      else el.appendChild(document.createTextNode(String(k)));
    }
  }

  // swap puts the children of fresh into target, unless they are the same
  // markup: a refresh that changed nothing leaves the page alone, so a click
  // or a text selection in progress is not lost every two seconds.
  function swap(target, fresh) {
    if (target.innerHTML === fresh.innerHTML) return false;
    target.replaceChildren(...fresh.childNodes);
    return true;
  }

  // --- formatting ---------------------------------------------------------

  // num prints at most two decimals and no trailing zeros (0.1, 2, 1.25).
  function num(v, digits = 2) {
    const n = Number(v);
    if (!isFinite(n)) return '0';
    return String(Number(n.toFixed(digits)));
  }

  function bytes(n) {
    n = Number(n) || 0;
    const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
  }

  // mb formats a Mesos mem or disk scalar, which counts megabytes.
  function mb(v) {
    return bytes((Number(v) || 0) * 1024 * 1024);
  }

  const pad = (n) => String(n).padStart(2, '0');

  // time formats Mesos seconds-since-epoch (a float) as local time.
  function time(sec) {
    const n = Number(sec);
    if (!n) return '-';
    const d = new Date(n * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function timeEl(sec) {
    const n = Number(sec);
    if (!n) return '-';
    const iso = new Date(n * 1000).toISOString();
    return h('time', { datetime: iso, title: iso }, time(n));
  }

  const code = (s) => (s === undefined || s === null || s === '' ? '-' : h('code', null, s));

  // stateClass groups task states for colouring.
  function stateClass(s) {
    switch (s) {
      case 'TASK_RUNNING': return 'running';
      case 'TASK_STAGING': case 'TASK_STARTING': return 'starting';
      case 'TASK_KILLING': case 'TASK_KILLED': return 'killed';
      case 'TASK_FINISHED': return 'finished';
      case 'TASK_UNREACHABLE': case 'TASK_UNKNOWN': return 'unknown';
      default: return s ? 'failed' : 'unknown';
    }
  }

  function stateBadge(s) {
    return h('span', { class: 'state state-' + stateClass(s), dataset: { state: s || '' } }, s || '-');
  }

  // terminal reports whether a task state is final.
  function terminal(s) {
    return ['TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_ERROR', 'TASK_LOST',
      'TASK_DROPPED', 'TASK_GONE', 'TASK_GONE_BY_OPERATOR'].includes(s);
  }

  // attrs formats Mesos attributes, an object in state JSON ({rack: "2"})
  // or a list of Attribute messages.
  function attrs(a) {
    if (!a) return '';
    if (Array.isArray(a)) {
      return a.map((x) => `${x.name}:${x.text ? x.text.value : x.scalar ? x.scalar.value : JSON.stringify(x.ranges || x.set || '')}`).join('; ');
    }
    return Object.entries(a).map(([k, v]) => `${k}:${typeof v === 'object' ? JSON.stringify(v) : v}`).join('; ');
  }

  // --- widgets ------------------------------------------------------------

  // table: cols are labels or {label, class}; rows are arrays of cells or
  // {attrs, cells}.
  function table(cols, rows, opts = {}) {
    const head = h('thead', null, h('tr', null, cols.map((c) =>
      h('th', { scope: 'col', class: typeof c === 'object' ? c.class : null }, typeof c === 'object' ? c.label : c))));
    const tbody = h('tbody');
    if (!rows.length) {
      tbody.appendChild(h('tr', { class: 'empty' }, h('td', { colspan: cols.length }, opts.empty || 'None')));
    }
    for (const r of rows) {
      const cells = Array.isArray(r) ? r : r.cells;
      const tr = h('tr', Array.isArray(r) ? null : r.attrs);
      cells.forEach((c, i) => {
        const cls = typeof cols[i] === 'object' ? cols[i].class : null;
        tr.appendChild(h('td', { class: cls }, c));
      });
      tbody.appendChild(tr);
    }
    return h('table', { class: 'table' + (opts.class ? ' ' + opts.class : ''), id: opts.id, dataset: opts.testid ? { testid: opts.testid } : null },
      opts.caption ? h('caption', null, opts.caption) : null, head, tbody);
  }

  // info is a definition list of [term, value] pairs, skipping empty values.
  function info(pairs, id) {
    const dl = h('dl', { class: 'info', id });
    for (const [k, v] of pairs) {
      if (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length)) continue;
      dl.append(h('dt', null, k), h('dd', null, v));
    }
    return dl;
  }

  function section(title, ...kids) {
    return h('section', { class: 'panel' }, h('h2', null, title), kids);
  }

  // crumbs is a breadcrumb trail of {label, href, title}; the last item is
  // the current page and is not a link.
  function crumbs(items, id) {
    const last = items.length - 1;
    return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb', id }, h('ol', null, items.map((it, n) =>
      n === last
        ? h('li', { 'aria-current': 'page', title: it.title }, it.label)
        : h('li', null, h('a', { href: it.href, title: it.title, class: 'crumb' }, it.label)))));
  }

  function notice(kind, ...kids) {
    return h('div', { class: 'notice notice-' + kind, role: kind === 'error' ? 'alert' : 'status' }, kids);
  }

  function setStatus(text, error) {
    const el = document.getElementById('refresh-status');
    if (!el) return;
    el.textContent = text;
    el.classList.toggle('error', !!error);
  }

  // banner shows content above the page, or hides it when content is null.
  function banner(content, kind = 'warn') {
    const el = document.getElementById('banner');
    if (!content) {
      if (!el.hidden) {
        el.hidden = true;
        el.replaceChildren();
      }
      return;
    }
    const fresh = h('div', null, content);
    el.className = 'banner banner-' + kind;
    swap(el, fresh);
    el.hidden = false;
  }

  // --- data ---------------------------------------------------------------

  class HTTPError extends Error {
    constructor(status, body, url) {
      super(`${url}: ${status} ${(body || '').trim()}`.trim());
      this.status = status;
      this.body = body || '';
    }
  }

  // getJSON fetches url and parses its JSON, throwing HTTPError for an
  // answer other than 2xx (status 0 for a redirect when redirect is
  // 'manual', which fetch hides from scripts).
  async function getJSON(url, init = {}) {
    const r = await fetch(url, Object.assign({ cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'application/json' } }, init));
    if (r.type === 'opaqueredirect') throw new HTTPError(0, 'redirected', url);
    if (!r.ok) throw new HTTPError(r.status, await r.text(), url);
    return r.json();
  }

  // gone reports whether an error is the files API saying that the GC
  // removed the sandbox.
  function gone(e) {
    return e && (e.status === 404 || e.status === 410) && /garbage collected/i.test(e.body);
  }

  // every calls fn now and again each ms after it settles, skipping turns
  // while the tab is hidden; it returns a stop function.
  function every(ms, fn) {
    let timer = null;
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      try {
        if (!document.hidden) await fn();
      } catch (e) {
        console.error(e);
      }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    const wake = () => {
      if (!document.hidden && !stopped) {
        clearTimeout(timer);
        tick();
      }
    };
    document.addEventListener('visibilitychange', wake);
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', wake);
    };
  }

  // --- routing ------------------------------------------------------------

  function dec(s) {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  }

  // encPath encodes a path for a URL but keeps its slashes readable.
  const encPath = (p) => encodeURIComponent(p).replace(/%2F/g, '/');

  // query builds "k=v&..." with every value encoded (paths keep slashes).
  function query(params) {
    return Object.entries(params).filter(([, v]) => v !== undefined && v !== null)
      .map(([k, v]) => encodeURIComponent(k) + '=' + encPath(String(v))).join('&');
  }

  // route parses location.hash: "#/a/b?x=1" -> {parts: ['a','b'], query: {x: '1'}}.
  function route() {
    let hash = location.hash.replace(/^#/, '');
    if (!hash.startsWith('/')) hash = '/' + hash;
    const qi = hash.indexOf('?');
    const path = qi < 0 ? hash : hash.slice(0, qi);
    const q = {};
    if (qi >= 0) {
      for (const kv of hash.slice(qi + 1).split('&')) {
        if (!kv) continue;
        const i = kv.indexOf('=');
        q[dec(i < 0 ? kv : kv.slice(0, i))] = i < 0 ? '' : dec(kv.slice(i + 1));
      }
    }
    return { parts: path.split('/').filter(Boolean).map(dec), query: q };
  }

  // markNav sets aria-current on the nav link whose route starts the hash.
  function markNav(first) {
    for (const a of document.querySelectorAll('nav .nav-link')) {
      const target = a.getAttribute('href').replace(/^#\/?/, '').split('/')[0];
      if (target === (first || '')) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  // byteLen is the UTF-8 length of s: file offsets count bytes, JavaScript
  // strings count UTF-16 units.
  const encoder = new TextEncoder();
  const byteLen = (s) => encoder.encode(s).length;

  return {
    config, h, safeURL, swap, num, bytes, mb, time, timeEl, code, stateClass, stateBadge, terminal, attrs,
    table, info, section, crumbs, notice, setStatus, banner, HTTPError, getJSON, gone, every,
    encPath, query, route, markNav, byteLen,
  };
})();
