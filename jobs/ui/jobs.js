// The jobs page: the job list with search, "+ New Job" (fields like
// Chronos's form, or JSON), a job's page with its runs linked to their
// tasks in the master's UI, and the dependency graph. It reads the
// service's own Chronos API only. Plain JavaScript on the cluster pages'
// helpers (ML, /static/app.js).
'use strict';

(() => {
  const { h } = ML;
  const main = document.getElementById('main');
  let info = {};
  let region = null; // the part of the page the refresh redraws
  let refresh = async () => {};

  async function send(method, url, body) {
    const r = await fetch(url, {
      method, credentials: 'same-origin',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) throw new ML.HTTPError(r.status, await r.text(), url);
  }

  // lastRun is the later of a job's last success and last error.
  const lastRun = (j) => [j.lastSuccess, j.lastError].filter(Boolean).sort().pop() || '';
  // nextRun is the start of a job's schedule while it repeats (the
  // scheduler moves it forward after each run), or, for a cron schedule,
  // the next run the scheduler keeps beside it.
  function nextRun(j) {
    if (!j.schedule || j.disabled) return '';
    if (j.nextCronRun) return j.nextCronRun;
    if (!j.schedule.startsWith('R')) return '';
    const [r, start] = j.schedule.split('/');
    return r === 'R0' ? '' : start || '';
  }
  const when = (iso) => iso ? h('time', { datetime: iso, title: iso }, iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC')) : '-';
  const jobHref = (name) => '#/job/' + encodeURIComponent(name);
  const statusBadge = (s) => h('span', { class: 'state state-' + (s === 'success' ? 'ok' : s === 'failure' ? 'bad' : 'idle'), dataset: { status: s } }, s);

  function taskURL(taskID) {
    if (!info.master_ui || !info.framework_id) return null;
    return `${info.master_ui}#/frameworks/${encodeURIComponent(info.framework_id)}/tasks/${encodeURIComponent(taskID)}`;
  }

  // --- the job list -------------------------------------------------------

  function listView() {
    const search = h('input', { type: 'search', class: 'search', id: 'job-search', placeholder: 'Search name, command or owner', 'aria-label': 'Search jobs' });
    search.value = ML.route().query.q || '';
    region = h('div', { id: 'job-list' });
    search.addEventListener('input', () => refresh());
    refresh = async () => {
      const [jobs, sum] = await Promise.all([ML.getJSON('/scheduler/jobs'), ML.getJSON('/scheduler/jobs/summary')]);
      const bySum = new Map(sum.jobs.map((s) => [s.name, s]));
      const q = search.value.trim().toLowerCase();
      const shown = jobs.filter((j) => !q || [j.name, j.command, j.owner].some((f) => (f || '').toLowerCase().includes(q)));
      ML.swap(region, h('div', null, ML.table(['Name', 'Status', 'State', 'Last run', 'Next run', 'Schedule or parents'], shown.map((j) => {
        const s = bySum.get(j.name) || {};
        return {
          attrs: { dataset: { job: j.name } },
          cells: [h('a', { href: jobHref(j.name), class: 'job-link' }, j.name), statusBadge(s.status || 'fresh'),
            j.disabled ? 'disabled' : s.state || 'idle', when(lastRun(j)), when(nextRun(j)),
            j.schedule ? ML.code(j.schedule) : (j.parents || []).join(', ')],
        };
      }), { id: 'jobs-table', empty: q ? 'No job matches.' : 'No jobs yet: add one with + New Job.' })));
    };
    return [h('h1', null, 'Jobs'), search, region];
  }

  // --- + New Job --------------------------------------------------------

  function field(label, id, input) {
    input.id = id;
    return [h('label', { for: id }, label), input];
  }

  function newView() {
    refresh = async () => {};
    const now = new Date(Date.now() + 5000).toISOString().replace(/\.\d+Z$/, 'Z');
    const name = h('input', { required: true, placeholder: 'test1' });
    const command = h('input', { required: true, placeholder: 'hostname' });
    const parents = h('input', { placeholder: 'comma-separated; leave empty for a schedule' });
    const owners = h('input', { placeholder: 'you@example.com, ...' });
    const repeat = h('input', { class: 'repeat', placeholder: '∞', 'aria-label': 'Repetitions (empty: forever)' });
    const start = h('input', { 'aria-label': 'Start (UTC)' });
    start.value = now;
    const period = h('input', { 'aria-label': 'Period (ISO 8601)' });
    period.value = 'PT5M';
    repeat.id = 'schedule-repeat'; start.id = 'schedule-start'; period.id = 'schedule-period';
    const json = h('textarea', { id: 'job-json', 'aria-label': 'Job JSON', hidden: true });
    const error = h('div', { id: 'form-error' });
    const fromFields = () => {
      const job = { name: name.value.trim(), command: command.value, owner: owners.value.trim() };
      const ps = parents.value.split(',').map((p) => p.trim()).filter(Boolean);
      if (ps.length) job.parents = ps;
      else job.schedule = `R${repeat.value.trim()}/${start.value.trim()}/${period.value.trim()}`;
      return job;
    };
    const toggle = h('button', { type: 'button', id: 'json-mode' }, 'Edit as JSON');
    toggle.addEventListener('click', () => {
      if (json.hidden) json.value = JSON.stringify(fromFields(), null, 2);
      json.hidden = !json.hidden;
      toggle.textContent = json.hidden ? 'Edit as JSON' : 'Back to the fields';
    });
    const form = h('form', { class: 'job-form', id: 'new-job-form' },
      field('NAME', 'job-name', name), field('COMMAND', 'job-command', command),
      field('PARENTS', 'job-parents', parents), field('OWNER(S)', 'job-owners', owners),
      h('label', { for: 'schedule-start' }, 'SCHEDULE'),
      h('div', { class: 'schedule' }, 'R', repeat, '/', start, '/', period, h('span', { class: 'muted' }, 'repetitions / start (UTC) / period')),
      h('span'), json,
      h('span'), h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'create-job' }, 'Create'), toggle), h('span'), error);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      let job;
      try {
        job = json.hidden ? fromFields() : JSON.parse(json.value);
      } catch (e) {
        ML.swap(error, h('div', null, ML.notice('error', 'The JSON does not parse: ', e.message)));
        return;
      }
      try {
        await send('POST', job.parents && job.parents.length ? '/scheduler/dependency' : '/scheduler/iso8601', job);
        location.hash = jobHref(job.name);
      } catch (e) {
        ML.swap(error, h('div', null, ML.notice('error', 'Not created: ', e.body || e.message)));
      }
    });
    return [h('h1', null, 'New job'), form];
  }

  // --- a job ---------------------------------------------------------------

  function jobView(name) {
    region = h('div', { id: 'job-page' });
    const act = (label, id, fn) => {
      const b = h('button', { type: 'button', id }, label);
      b.addEventListener('click', async () => {
        try {
          await fn();
          await refresh();
        } catch (e) {
          ML.banner(['Failed: ', e.body || e.message], 'error');
        }
      });
      return b;
    };
    let current = null;
    const actions = h('div', { class: 'actions' },
      act('Run now', 'run-now', () => send('PUT', '/scheduler/job/' + encodeURIComponent(name))),
      act('Disable / enable', 'toggle-disabled', async () => {
        const j = Object.assign({}, current, { disabled: !current.disabled });
        await send('POST', j.parents && j.parents.length ? '/scheduler/dependency' : '/scheduler/iso8601', j);
      }),
      act('Delete', 'delete-job', async () => {
        if (!confirm(`Delete job ${name}?`)) return;
        await send('DELETE', '/scheduler/job/' + encodeURIComponent(name));
        location.hash = '#/';
      }));
    refresh = async () => {
      const list = await ML.getJSON('/scheduler/jobs/search?name=' + encodeURIComponent(name));
      current = list.find((j) => j.name === name);
      if (!current) {
        ML.swap(region, h('div', null, ML.notice('warn', 'No job ', ML.code(name), '. ', h('a', { href: '#/' }, 'Back to the jobs'))));
        return;
      }
      const stat = await ML.getJSON('/scheduler/job/stat/' + encodeURIComponent(name));
      const j = current;
      const runs = stat.taskStatHistory.slice().reverse();
      // Data processing jobs report their progress (elements processed, a
      // status message) while they run.
      const progress = j.dataProcessingJobType || runs.some((r) => r.numElementsProcessed != null || r.statusMessage);
      ML.swap(region, h('div', null,
        ML.info([['Command', ML.code(j.command)], ['Schedule', j.schedule ? ML.code(j.schedule) : null],
          ['Parents', (j.parents || []).map((p) => h('a', { href: jobHref(p) }, p))], ['Owner', j.owner], ['Disabled', j.disabled ? 'yes' : 'no'],
          ['Successes', String(j.successCount)], ['Errors', String(j.errorCount)], ['Last success', when(j.lastSuccess)],
          ['Last error', when(j.lastError)], ['Next run', when(nextRun(j))],
          ['Median run', stat.histogram.count ? stat.histogram.median.toFixed(2) + ' s' : null]], 'job-info'),
        ML.section('Runs', ML.table(['Task', 'State', 'Started', 'Ended', 'Seconds', 'Agent'].concat(progress ? ['Processed', 'Status'] : []), runs.map((r) => {
          const url = taskURL(r.taskId);
          const cells = [url ? h('a', { href: url, class: 'task-link' }, r.taskId) : ML.code(r.taskId), ML.stateBadge(r.taskState),
            when(r.taskStart), when(r.taskEnd), r.taskStart ? r.elapsedSeconds.toFixed(2) : '-', r.slaveId || '-'];
          if (progress) {
            cells.push(r.numElementsProcessed != null ? String(r.numElementsProcessed) : '-',
              h('span', { class: 'status-message' }, r.statusMessage || '-'));
          }
          return { attrs: { dataset: { task: r.taskId } }, cells };
        }), { id: 'runs-table', empty: 'No run yet.' }))));
    };
    return [ML.crumbs([{ label: 'Jobs', href: '#/' }, { label: name }], 'breadcrumbs'), h('h1', null, name), actions, region];
  }

  // --- the dependency graph ------------------------------------------------

  function graphView() {
    region = h('div', { id: 'graph' });
    refresh = async () => {
      const r = await fetch('/scheduler/graph/csv', { cache: 'no-store', credentials: 'same-origin' });
      if (!r.ok) throw new ML.HTTPError(r.status, await r.text(), '/scheduler/graph/csv');
      const nodes = new Map();
      const links = [];
      for (const line of (await r.text()).split('\n')) {
        const f = line.split(',');
        if (f[0] === 'node') nodes.set(f[1], { name: f[1], status: f[2], parents: [] });
        else if (f[0] === 'link') links.push([f[1], f[2]]);
      }
      for (const [p, c] of links) if (nodes.has(c)) nodes.get(c).parents.push(p);
      // Each job one level below its deepest parent.
      const depth = (n, seen = new Set()) => {
        if (n.level !== undefined) return n.level;
        if (seen.has(n.name)) return 0;
        seen.add(n.name);
        n.level = Math.max(-1, ...n.parents.filter((p) => nodes.has(p)).map((p) => depth(nodes.get(p), seen))) + 1;
        return n.level;
      };
      const rows = [];
      for (const n of nodes.values()) (rows[depth(n)] ||= []).push(n);
      const W = 160, H = 36, GX = 30, GY = 50;
      const width = Math.max(1, ...rows.map((r) => r.length)) * (W + GX);
      const svgNS = 'http://www.w3.org/2000/svg';
      const el = (tag, attrs, ...kids) => {
        const e = document.createElementNS(svgNS, tag);
        for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
        kids.forEach((k) => e.appendChild(typeof k === 'string' ? document.createTextNode(k) : k));
        return e;
      };
      rows.forEach((row, y) => row.forEach((n, x) => { n.x = x * (W + GX) + GX / 2; n.y = y * (H + GY) + 10; }));
      const svg = el('svg', { class: 'graph', id: 'graph-svg', viewBox: `0 0 ${width} ${rows.length * (H + GY) + 10}`, width });
      svg.appendChild(el('defs', null, el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' },
        el('path', { d: 'M 0 0 L 10 5 L 0 10 z' }))));
      for (const [p, c] of links) {
        const a = nodes.get(p), b = nodes.get(c);
        if (a && b) svg.appendChild(el('line', { x1: a.x + W / 2, y1: a.y + H, x2: b.x + W / 2, y2: b.y }));
      }
      for (const n of nodes.values()) {
        const a = el('a', { href: jobHref(n.name), class: n.status, 'data-job': n.name },
          el('rect', { x: n.x, y: n.y, width: W, height: H }), el('text', { x: n.x + W / 2, y: n.y + H / 2 + 5, 'text-anchor': 'middle' }, n.name));
        svg.appendChild(a);
      }
      ML.swap(region, h('div', null, nodes.size ? svg : h('p', { class: 'muted' }, 'No jobs yet.')));
    };
    return [h('h1', null, 'Dependencies'), h('p', { class: 'muted' }, 'Green: last run succeeded; red: failed; white: not run yet.'), region];
  }

  // --- routing ----------------------------------------------------------------

  function view() {
    const { parts } = ML.route();
    ML.markNav(parts[0] === 'job' ? '' : parts[0]);
    switch (parts[0]) {
      case undefined: return ['Jobs', listView];
      case 'new': return ['New job', newView];
      case 'job': return ['Job ' + parts[1], () => jobView(parts[1])];
      case 'graph': return ['Dependencies', graphView];
      default: refresh = async () => {}; return ['Not found', () => [h('h1', null, 'No such page'), h('a', { href: '#/' }, 'Back to the jobs')]];
    }
  }

  async function load() {
    try {
      info = await ML.getJSON('/ui/info');
      await refresh();
      ML.banner(null);
      ML.setStatus('updated ' + new Date().toISOString().slice(11, 19) + ' UTC');
    } catch (e) {
      ML.setStatus('update failed', true);
      ML.banner(['Cannot reach the jobs service (', e.message, '); retrying.'], 'error');
    }
  }

  function render() {
    const [title, build] = view();
    document.title = `${title} · mesolite jobs`;
    main.replaceChildren(...build());
    load();
  }

  window.addEventListener('hashchange', render);
  render();
  ML.every(ML.config.refreshMS, load);
})();
