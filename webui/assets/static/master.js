// The master's pages: every view is drawn from one /master/state document
// fetched every couple of seconds. Mesos's JSON shape; fields mesolite adds
// (executor container ids, agents' HTTP addresses) are used when present and
// never required.
'use strict';

(() => {
  const { h, table, info, section, num, mb, timeEl, code, stateBadge } = ML;
  const main = document.getElementById('main');
  const RES = ['cpus', 'gpus', 'mem', 'disk'];
  const STATES = ['TASK_STAGING', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_KILLING', 'TASK_FINISHED',
    'TASK_KILLED', 'TASK_FAILED', 'TASK_LOST', 'TASK_ERROR', 'TASK_DROPPED', 'TASK_UNREACHABLE',
    'TASK_GONE', 'TASK_GONE_BY_OPERATOR', 'TASK_UNKNOWN'];
  // Always listed on the overview, even at zero, as Mesos did.
  const MAIN_STATES = new Set(['TASK_STAGING', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_KILLING',
    'TASK_FINISHED', 'TASK_KILLED', 'TASK_FAILED', 'TASK_LOST']);
  const MAX_ROWS = 500;

  // The filter box in the header narrows every list on the page: words
  // match any column shown; state:, framework:, agent:, name: and id:
  // match that column only. It lives outside the redrawn part of the page,
  // so typing survives each refresh.
  const filterBox = document.getElementById('filter');
  function filterTerms() {
    const terms = [];
    for (const w of (filterBox ? filterBox.value : '').toLowerCase().split(/\s+/).filter(Boolean)) {
      const i = w.indexOf(':');
      terms.push(i > 0 ? { key: w.slice(0, i), v: w.slice(i + 1) } : { key: '', v: w });
    }
    return terms;
  }
  // passes says whether a row with these fields ({id, name, state,
  // framework, agent, ...: string}) passes the filter.
  function passes(fields, terms = filterTerms()) {
    return terms.every(({ key, v }) => {
      const vals = key ? [fields[key]] : Object.values(fields);
      return vals.some((f) => String(f || '').toLowerCase().includes(v));
    });
  }
  const taskFields = ({ t, fw }) => {
    const a = model.agents.get(t.slave_id);
    return { id: t.id, name: t.name, state: t.state, framework: fw ? `${fw.name || ''} ${fw.id}` : t.framework_id, agent: `${t.slave_id || ''} ${a ? a.hostname : ''}` };
  };

  let model = null; // the indexed state, null until the first answer
  let lastError = null;

  // --- the state document ---------------------------------------------------

  function index(s) {
    const agents = new Map();
    for (const a of s.slaves || []) agents.set(a.id, a);
    const frameworks = new Map();
    const tasks = [];
    const addFramework = (fw, completed) => {
      fw._completed = completed;
      frameworks.set(fw.id, fw);
      for (const t of fw.tasks || []) tasks.push({ t, fw, done: completed || ML.terminal(t.state) });
      for (const t of fw.unreachable_tasks || []) tasks.push({ t, fw, done: false });
      for (const t of fw.completed_tasks || []) tasks.push({ t, fw, done: true });
    };
    for (const fw of s.frameworks || []) addFramework(fw, false);
    for (const fw of s.completed_frameworks || []) {
      if (!frameworks.has(fw.id)) addFramework(fw, true);
    }
    for (const t of s.orphan_tasks || []) tasks.push({ t, fw: null, done: ML.terminal(t.state) });
    return { s, agents, frameworks, tasks };
  }

  const res = (r, k) => Number(r && r[k]) || 0;

  function sumResources(list, key) {
    const out = { cpus: 0, gpus: 0, mem: 0, disk: 0 };
    for (const x of list) for (const k of RES) out[k] += res(x[key], k);
    return out;
  }

  // lastTime is when the task last changed: its newest status.
  function statusTimes(t) {
    const ts = (t.statuses || []).map((s) => Number(s.timestamp) || 0).filter(Boolean);
    return { first: ts.length ? Math.min(...ts) : 0, last: ts.length ? Math.max(...ts) : 0 };
  }

  function byNewest(a, b) {
    return statusTimes(b.t).last - statusTimes(a.t).last;
  }

  // --- links ------------------------------------------------------------------

  const hostOf = (pid) => (pid && pid.includes('@') ? pid.slice(pid.indexOf('@') + 1) : pid || '');

  // agentAddr is where the agent's HTTP server is: a field mesolite adds
  // when it has one, else Mesos's pid "slave(1)@ip:port", else hostname:port.
  function agentAddr(a) {
    if (!a) return '';
    for (const k of ['http_address', 'address', 'endpoint']) {
      if (typeof a[k] === 'string' && a[k]) return a[k].replace(/^[a-z]+:\/\//, '').replace(/\/$/, '');
    }
    if (a.pid && a.pid.includes('@')) return hostOf(a.pid);
    if (a.hostname) return a.hostname + ':' + (a.port || 5051);
    return '';
  }

  function agentURL(a, hash) {
    const addr = agentAddr(a);
    return addr ? `${location.protocol}//${addr}/${hash || '#/'}` : '';
  }

  const fwHref = (id) => '#/frameworks/' + encodeURIComponent(id);
  const taskHref = (fwID, id) => fwHref(fwID) + '/tasks/' + encodeURIComponent(id);
  const agentHref = (id) => '#/agents/' + encodeURIComponent(id);

  function executorOf(fw, t) {
    const id = t.executor_id || t.id;
    return (fw && (fw.executors || []).find((e) =>
      (e.executor_id || e.id) === id && (!e.slave_id || !t.slave_id || e.slave_id === t.slave_id))) || null;
  }

  // containerOf is the task's container: a field the master adds, else the
  // newest status that carries one.
  function containerOf(t, ex) {
    if (t.container_id) return typeof t.container_id === 'object' ? t.container_id : { value: t.container_id };
    if (ex && ex.container_id) return typeof ex.container_id === 'object' ? ex.container_id : { value: ex.container_id };
    const st = (t.statuses || []).slice().sort((a, b) => (b.timestamp || 0) - (a.timestamp || 0));
    for (const s of st) {
      const c = s.container_status && s.container_status.container_id;
      if (c && c.value) return c;
    }
    return null;
  }

  // sandboxPath is the files API path of the task's sandbox: the run of its
  // executor's container when known, else the path the master gives (its
  // "sandbox" object), else runs/latest; a task nested in a task group lives
  // under containers/ of its executor's run, as in Mesos.
  function sandboxPath(t, fw, ex) {
    const fwID = t.framework_id || (fw && fw.id);
    const exID = t.executor_id || t.id;
    const base = `/frameworks/${fwID}/executors/${exID}/runs/`;
    const c = containerOf(t, ex);
    if (!c) return (t.sandbox && t.sandbox.path) || base + 'latest';
    const chain = [];
    for (let x = c; x; x = x.parent) chain.unshift(x.value);
    return base + chain[0] + chain.slice(1).map((v) => '/containers/' + v).join('');
  }

  // sandboxAgent is the agent that holds the task's sandbox: the registered
  // agent, else the address the master's "sandbox" object names.
  function sandboxAgent(t) {
    const a = model.agents.get(t.slave_id);
    if (agentAddr(a)) return a;
    if (t.sandbox && t.sandbox.agent_address) return { http_address: t.sandbox.agent_address };
    return null;
  }

  // sandboxLinks returns [sandbox, stdout, stderr] links into the agent's
  // sandbox browser, or a note when the agent's address is unknown.
  function sandboxLinks(t, fw, ids) {
    const a = sandboxAgent(t);
    const p = sandboxPath(t, fw, executorOf(fw, t));
    if (!a) return [h('span', { class: 'muted', title: 'the agent is not registered' }, 'agent gone')];
    const link = (label, hash, id) => h('a', {
      href: agentURL(a, hash), id: ids ? id : null, class: 'sandbox ' + id,
      dataset: ids ? { testid: id } : null, title: label === 'Sandbox' ? p : null,
    }, label);
    return [
      link('Sandbox', '#/sandbox?path=' + ML.encPath(p), 'sandbox-link'),
      link('stdout', '#/file?path=' + ML.encPath(p + '/stdout'), 'stdout-link'),
      link('stderr', '#/file?path=' + ML.encPath(p + '/stderr'), 'stderr-link'),
    ];
  }

  function agentLink(id) {
    const a = model.agents.get(id);
    if (!id) return '-';
    return h('a', { href: agentHref(id), class: 'agent-link', title: id }, a ? a.hostname || agentAddr(a) : id);
  }

  function fwLink(fw, label) {
    return h('a', { href: fwHref(fw.id), class: 'framework-link', dataset: { testid: 'framework-link' } }, label || fw.id);
  }

  // --- tables ---------------------------------------------------------------

  function taskTable(all, opts = {}) {
    const terms = filterTerms();
    const list = terms.length ? all.filter((x) => passes(taskFields(x), terms)) : all;
    const rows = list.slice(0, opts.max || MAX_ROWS).map(({ t, fw }) => {
      const fwID = t.framework_id || (fw && fw.id) || '';
      const times = statusTimes(t);
      const cells = [
        h('a', { href: taskHref(fwID, t.id), class: 'task-link', dataset: { testid: 'task-link' } }, t.id),
        t.name || '',
        stateBadge(t.state),
      ];
      if (opts.framework) cells.push(fw ? fwLink(fw, fw.name || fw.id) : code(fwID));
      cells.push(agentLink(t.slave_id), timeEl(times.first), timeEl(times.last), h('span', { class: 'links' }, sandboxLinks(t, fw, false)));
      return { attrs: { class: 'task-row', dataset: { testid: 'task-row', taskId: t.id, state: t.state || '' } }, cells };
    });
    const cols = ['ID', 'Name', 'State'];
    if (opts.framework) cols.push('Framework');
    cols.push('Agent', 'Started', 'Updated', 'Sandbox');
    const tbl = table(cols, rows, { empty: terms.length && all.length ? 'No task matches the filter' : opts.empty || 'No tasks', id: opts.id, testid: opts.id, class: 'tasks' });
    if (list.length > (opts.max || MAX_ROWS)) {
      return [tbl, h('p', { class: 'muted' }, `Showing ${opts.max || MAX_ROWS} of ${list.length} tasks.`)];
    }
    return tbl;
  }

  function resourceCells(r) {
    return [num(res(r, 'cpus')), num(res(r, 'gpus')), mb(res(r, 'mem')), mb(res(r, 'disk'))];
  }

  function resourceTable(rows, id) {
    return table(['', 'CPUs', 'GPUs', 'Mem', 'Disk'], rows.map(([label, r]) => ({
      attrs: { dataset: { row: label.toLowerCase() } },
      cells: [h('strong', null, label), ...resourceCells(r)],
    })), { id, testid: id, class: 'resources' });
  }

  function frameworkTable(all, completed, id) {
    const activeTasks = (fw) => model.tasks.filter((x) => x.fw === fw && !x.done).length;
    const terms = filterTerms();
    let list = all.filter((fw) => passes({ id: fw.id, name: fw.name, framework: `${fw.name || ''} ${fw.id}`, user: fw.user, role: fw.role || (fw.roles || []).join(' ') }, terms));
    // Completed frameworks of one name (each `mesolite run` is one) fold
    // into their newest, with how many there were.
    const folded = new Map();
    if (completed) {
      const groups = new Map();
      for (const fw of list.slice().sort((a, b) => (b.unregistered_time || b.registered_time || 0) - (a.unregistered_time || a.registered_time || 0))) {
        const k = fw.name || fw.id;
        if (!groups.has(k)) groups.set(k, []);
        groups.get(k).push(fw);
      }
      list = [...groups.values()].map((g) => { folded.set(g[0], g.length); return g[0]; });
    }
    const rows = list.map((fw) => ({
      attrs: { class: 'framework-row', dataset: { testid: 'framework-row', frameworkId: fw.id } },
      cells: completed
        ? [fwLink(fw), [fw.name || '', folded.get(fw) > 1 ? h('span', { class: 'muted fold-count', title: 'completed frameworks of this name; the newest is shown' }, ` ×${folded.get(fw)}`) : null],
          fw.user || '', timeEl(fw.registered_time), timeEl(fw.unregistered_time),
          String((fw.completed_tasks || []).length + (fw.tasks || []).length)]
        : [fwLink(fw), fw.name || '', fw.user || '', fw.role || (fw.roles || []).join(', ') || '*',
          fw.active === false ? h('span', { class: 'state state-unknown' }, 'inactive') : h('span', { class: 'state state-running' }, 'active'),
          String(activeTasks(fw)), ...resourceCells(fw.used_resources || fw.resources), timeEl(fw.registered_time)],
    }));
    const cols = completed
      ? ['ID', 'Name', 'User', 'Registered', 'Unregistered', 'Tasks']
      : ['ID', 'Name', 'User', 'Role', 'Status', 'Active tasks', 'CPUs', 'GPUs', 'Mem', 'Disk', 'Registered'];
    return table(cols, rows, { id, testid: id, empty: terms.length && all.length ? 'No framework matches the filter' : completed ? 'No completed frameworks' : 'No active frameworks', class: 'frameworks' });
  }

  function agentTable(all, id) {
    const terms = filterTerms();
    const list = all.filter((a) => passes({ id: a.id, name: a.hostname, agent: `${a.id} ${a.hostname || ''}`, address: agentAddr(a), attributes: ML.attrs(a.attributes) }, terms));
    const tasksOn = (a) => model.tasks.filter((x) => x.t.slave_id === a.id && !x.done).length;
    const pair = (used, total, f) => `${f(used)} / ${f(total)}`;
    const rows = list.map((a) => ({
      attrs: { class: 'agent-row', dataset: { testid: 'agent-row', agentId: a.id } },
      cells: [
        h('a', { href: agentHref(a.id), class: 'agent-link', dataset: { testid: 'agent-link' } }, a.id),
        a.hostname || '',
        agentAddr(a) ? h('a', { href: agentURL(a), class: 'agent-ui' }, agentAddr(a)) : '-',
        a.version || '-',
        a.active === false ? h('span', { class: 'state state-failed' }, 'inactive') : h('span', { class: 'state state-running' }, 'active'),
        pair(res(a.used_resources, 'cpus'), res(a.resources, 'cpus'), num),
        pair(res(a.used_resources, 'gpus'), res(a.resources, 'gpus'), num),
        pair(res(a.used_resources, 'mem'), res(a.resources, 'mem'), mb),
        pair(res(a.used_resources, 'disk'), res(a.resources, 'disk'), mb),
        String(tasksOn(a)),
        ML.attrs(a.attributes) || '-',
        timeEl(a.registered_time),
      ],
    }));
    const nw = (label) => ({ label, class: 'nowrap' });
    return table(['ID', 'Host', 'Address', 'Version', 'Status', nw('CPUs (used / total)'), nw('GPUs'), nw('Mem'), nw('Disk'), 'Tasks', 'Attributes', nw('Registered')],
      rows, { id, testid: id, empty: 'No agents registered', class: 'agents' });
  }

  // --- views ------------------------------------------------------------------

  function overview() {
    const s = model.s;
    const agents = [...model.agents.values()];
    const total = sumResources(agents, 'resources');
    const used = sumResources(agents, 'used_resources');
    const offered = sumResources(agents, 'offered_resources');
    const idle = {};
    for (const k of RES) idle[k] = Math.max(0, total[k] - used[k] - offered[k]);

    const counts = new Map();
    for (const { t } of model.tasks) counts.set(t.state, (counts.get(t.state) || 0) + 1);
    const states = STATES.filter((st) => MAIN_STATES.has(st) || counts.get(st));
    for (const st of counts.keys()) if (st && !states.includes(st)) states.push(st);

    const fws = [...model.frameworks.values()];
    const active = fws.filter((f) => !f._completed);
    const activeAgents = agents.filter((a) => a.active !== false).length;

    const usedPct = total.cpus ? Math.round((used.cpus / total.cpus) * 100) : 0;
    const meter = h('div', { class: 'meter', role: 'img', 'aria-label': `${usedPct}% of CPUs used` }, h('span'));
    meter.firstChild.style.width = usedPct + '%';

    return [
      h('h1', null, s.cluster ? `Cluster ${s.cluster}` : 'Cluster'),
      h('div', { class: 'grid' },
        section('Master', info([
          ['Cluster', s.cluster || h('span', { class: 'muted' }, '(unnamed: set --cluster)')],
          ['Server', code(hostOf(s.pid))],
          ['Leader', s.leader ? code(hostOf(s.leader)) : null],
          ['Version', s.version],
          ['Started', timeEl(s.start_time)],
          ['Elected', timeEl(s.elected_time)],
          ['Agents', [h('a', { href: '#/agents', id: 'agents-active' }, String(activeAgents)), ' active, ',
            h('span', { id: 'agents-inactive' }, String(agents.length - activeAgents)), ' inactive']],
          ['Frameworks', [h('a', { href: '#/frameworks', id: 'frameworks-active' }, String(active.filter((f) => f.active !== false).length)),
            ' active, ', String(active.filter((f) => f.active === false).length), ' inactive, ',
            String(fws.length - active.length), ' completed']],
        ], 'master-info')),
        h('section', { class: 'panel span2' }, h('h2', null, 'Resources'),
          resourceTable([['Total', total], ['Used', used], ['Offered', offered], ['Idle', idle]], 'cluster-resources'),
          h('p', { class: 'muted meter-label' }, meter, ` ${usedPct}% of CPUs in use`)),
        section('Tasks', table(['State', 'Tasks'], states.map((st) => ({
          attrs: { dataset: { state: st } },
          cells: [stateBadge(st), h('a', { class: 'count', href: '#/tasks?state=' + encodeURIComponent(st) }, String(counts.get(st) || 0))],
        })), { id: 'tasks-by-state', testid: 'tasks-by-state', class: 'compact' }))),
      section('Active tasks', taskTable(model.tasks.filter((x) => !x.done), { framework: true, id: 'overview-active-tasks', max: 50 })),
      section('Recently completed tasks', taskTable(model.tasks.filter((x) => x.done).sort(byNewest), { framework: true, id: 'overview-recent-tasks', max: 10 })),
      section('Active frameworks', frameworkTable(active, false, 'overview-frameworks')),
      section('Agents', agentTable(agents, 'overview-agents')),
    ];
  }

  function frameworksView() {
    const fws = [...model.frameworks.values()];
    const running = model.tasks.filter((x) => !x.done);
    const done = model.tasks.filter((x) => x.done).sort(byNewest);
    return [
      h('h1', null, 'Frameworks'),
      section('Active frameworks', frameworkTable(fws.filter((f) => !f._completed), false, 'active-frameworks')),
      section('Active tasks', taskTable(running, { framework: true, id: 'active-tasks' })),
      section('Completed frameworks', frameworkTable(fws.filter((f) => f._completed), true, 'completed-frameworks')),
      section('Recently completed tasks', taskTable(done.slice(0, 100), { framework: true, id: 'recent-completed-tasks' })),
    ];
  }

  function capabilities(fw) {
    return (fw.capabilities || []).map((c) => (typeof c === 'string' ? c : c.type)).join(', ');
  }

  function frameworkView(id) {
    const fw = model.frameworks.get(id);
    if (!fw) return notFound('framework', id);
    const mine = model.tasks.filter((x) => x.fw === fw);
    return [
      ML.crumbs([{ label: 'Frameworks', href: '#/frameworks' }, { label: fw.name || fw.id, title: fw.id }], 'breadcrumbs'),
      h('h1', null, 'Framework ', h('span', { class: 'id' }, fw.name || fw.id)),
      h('div', { class: 'grid' },
        section('Details', info([
          ['ID', code(fw.id)],
          ['Name', fw.name],
          ['User', fw.user],
          ['Role', fw.role || (fw.roles || []).join(', ')],
          ['Principal', fw.principal],
          ['Hostname', fw.hostname],
          // Absolute http(s) URLs only: a relative one would point into
          // this master, anything else is shown as text, never a link.
          ['Web UI', !fw.webui_url ? null : /^https?:\/\//i.test(fw.webui_url) && ML.safeURL(fw.webui_url)
            ? h('a', { href: fw.webui_url, rel: 'noopener noreferrer', id: 'framework-webui' }, fw.webui_url)
            : h('span', { id: 'framework-webui', class: 'muted', title: 'not an http(s) URL' }, fw.webui_url)],
          ['Status', fw._completed ? 'completed' : fw.active === false ? 'inactive (disconnected)' : 'active'],
          ['Checkpoint', fw.checkpoint === undefined ? null : String(fw.checkpoint)],
          ['Failover timeout', fw.failover_timeout ? `${fw.failover_timeout} s` : null],
          ['Capabilities', capabilities(fw)],
          ['Registered', timeEl(fw.registered_time)],
          ['Re-registered', fw.reregistered_time ? timeEl(fw.reregistered_time) : null],
          ['Unregistered', fw.unregistered_time ? timeEl(fw.unregistered_time) : null],
        ], 'framework-info')),
        section('Resources', resourceTable([
          ['Allocated', fw.used_resources || fw.resources],
          ['Offered', fw.offered_resources],
        ], 'framework-resources'))),
      section('Active tasks', taskTable(mine.filter((x) => !x.done), { id: 'framework-active-tasks' })),
      section('Completed tasks', taskTable(mine.filter((x) => x.done).sort(byNewest), { id: 'framework-completed-tasks' })),
    ];
  }

  function containerInfo(c) {
    if (!c) return null;
    const d = c.docker || {};
    const m = c.mesos || {};
    const image = m.image && (m.image.docker ? m.image.docker.name : m.image.appc ? m.image.appc.name : '');
    const pairs = [
      ['Type', c.type],
      ['Image', d.image || image],
      ['Network', d.network],
      ['Privileged', d.privileged === undefined ? null : String(d.privileged)],
      ['Force pull', d.force_pull_image ? 'true' : null],
      ['Hostname', c.hostname],
      ['Port mappings', (d.port_mappings || []).map((p) => `${p.host_port} -> ${p.container_port}/${p.protocol || 'tcp'}`).join(', ')],
      ['Parameters', (d.parameters || []).map((p) => `${p.key}=${p.value}`).join(' ')],
      ['Volumes', (c.volumes || []).map((v) => `${v.host_path || (v.source ? v.source.type : '')}:${v.container_path}:${(v.mode || 'RW').toLowerCase()}`).join(', ')],
      ['Networks', (c.network_infos || []).map((n) => n.name || (n.ip_addresses || []).map((a) => a.ip_address).join(' ')).filter(Boolean).join(', ')],
    ];
    return info(pairs, 'container-info');
  }

  // labelsOf accepts Mesos's Labels message ({labels: [...]}) or a bare list.
  function labelsOf(t) {
    const l = t.labels;
    if (Array.isArray(l)) return l;
    return (l && Array.isArray(l.labels)) ? l.labels : [];
  }

  function taskView(fwID, id) {
    const x = model.tasks.find((y) => y.t.id === id && (y.t.framework_id || (y.fw && y.fw.id)) === fwID);
    if (!x) return notFound('task', id);
    const { t, fw } = x;
    const ex = executorOf(fw, t);
    const cid = containerOf(t, ex);
    const path = sandboxPath(t, fw, ex);
    const dir = (ex && ex.directory) || (t.sandbox && t.sandbox.directory) || '';
    const statuses = (t.statuses || []).slice().sort((a, b) => (a.timestamp || 0) - (b.timestamp || 0));
    const newest = statuses[statuses.length - 1] || {};
    // The health check's last word, from the latest status that carries one.
    const lastHealth = (statuses.slice().reverse().find((s) => s.healthy !== undefined) || {}).healthy;
    const ips = [];
    for (const n of ((newest.container_status || {}).network_infos || [])) {
      for (const a of n.ip_addresses || []) if (a.ip_address) ips.push(a.ip_address);
    }
    const r = t.resources || {};
    return [
      ML.crumbs([
        { label: 'Frameworks', href: '#/frameworks' },
        { label: fw ? fw.name || fw.id : fwID, href: fwHref(fwID), title: fwID },
        { label: t.id },
      ], 'breadcrumbs'),
      h('h1', null, 'Task ', h('span', { class: 'id', id: 'task-id' }, t.id), ' ', stateBadge(t.state)),
      h('p', { class: 'actions', id: 'task-sandbox' }, sandboxLinks(t, fw, true)),
      h('div', { class: 'grid' },
        section('Details', info([
          ['ID', code(t.id)],
          ['Name', t.name],
          ['State', stateBadge(t.state)],
          ['Framework', fw ? fwLink(fw, fw.name || fw.id) : code(fwID)],
          ['Agent', agentLink(t.slave_id)],
          ['Executor', code(t.executor_id || t.id)],
          ['Container', cid ? code(cid.value) : null],
          ['Sandbox', code(path)],
          ['Directory', dir ? code(dir) : null],
          ['Role', t.role],
          ['IP addresses', ips.join(', ')],
          ['Healthy', lastHealth === undefined ? null : (lastHealth ? 'healthy' : 'unhealthy')],
          ['Labels', labelsOf(t).map((l) => `${l.key}=${l.value || ''}`).join(', ')],
          ['Command', t.command && t.command.value ? code(t.command.value) : null],
        ], 'task-info')),
        section('Resources', table(['CPUs', 'GPUs', 'Mem', 'Disk', 'Ports'],
          [[num(res(r, 'cpus')), num(res(r, 'gpus')), mb(res(r, 'mem')), mb(res(r, 'disk')), r.ports || '-']],
          { id: 'task-resources', class: 'compact' })),
        t.container ? section('Container', containerInfo(t.container)) : null),
      section('Statuses', table(['Time', 'State', 'Reason', 'Message', 'Source', 'Healthy'],
        statuses.map((s) => ({
          attrs: { class: 'status-row', dataset: { state: s.state || '' } },
          cells: [timeEl(s.timestamp), stateBadge(s.state), s.reason ? code(s.reason) : '', s.message || '',
            s.source ? s.source.replace(/^SOURCE_/, '').toLowerCase() : '', s.healthy === undefined ? '' : String(s.healthy)],
        })), { id: 'task-statuses', testid: 'task-statuses', empty: 'No status updates yet', class: 'statuses' })),
    ];
  }

  // tasksView lists every task the master knows, ?state=S narrowing it.
  function tasksView() {
    const st = ML.route().query.state;
    const list = model.tasks.filter((x) => !st || x.t.state === st).sort(byNewest);
    return [h('h1', null, st ? `Tasks in ${st}` : 'Tasks'), section(st ? stateBadge(st) : 'All tasks', taskTable(list, { framework: true, id: 'all-tasks' }))];
  }

  function agentsView() {
    return [h('h1', null, 'Agents'), section('Registered agents', agentTable([...model.agents.values()], 'agents'))];
  }

  function agentView(id) {
    const a = model.agents.get(id);
    if (!a) return notFound('agent', id);
    const on = model.tasks.filter((x) => x.t.slave_id === id);
    const running = on.filter((x) => !x.done);
    const containers = new Map();
    for (const x of running) {
      const ex = executorOf(x.fw, x.t);
      const c = containerOf(x.t, ex);
      const key = (x.t.framework_id || '') + '/' + (x.t.executor_id || x.t.id);
      const e = containers.get(key) || { x, ex, c, tasks: [] };
      e.tasks.push(x);
      containers.set(key, e);
    }
    const total = a.resources || {};
    const used = a.used_resources || {};
    const offered = a.offered_resources || {};
    const idle = {};
    for (const k of RES) idle[k] = Math.max(0, res(total, k) - res(used, k) - res(offered, k));
    return [
      ML.crumbs([{ label: 'Agents', href: '#/agents' }, { label: a.hostname || a.id, title: a.id }], 'breadcrumbs'),
      h('h1', null, 'Agent ', h('span', { class: 'id' }, a.hostname || a.id)),
      h('div', { class: 'grid' },
        section('Details', info([
          ['ID', code(a.id)],
          ['Hostname', a.hostname],
          ['Address', agentAddr(a) ? h('a', { href: agentURL(a), id: 'agent-ui-link' }, agentAddr(a)) : null],
          ['Version', a.version],
          ['Status', a.active === false ? 'inactive' : 'active'],
          ['Attributes', ML.attrs(a.attributes)],
          ['Ports', total.ports],
          ['Registered', timeEl(a.registered_time)],
          ['Re-registered', a.reregistered_time ? timeEl(a.reregistered_time) : null],
        ], 'agent-info')),
        section('Resources', resourceTable([['Total', total], ['Used', used], ['Offered', offered], ['Idle', idle]], 'agent-resources'))),
      section('Containers', table(['Container', 'Executor', 'Framework', 'Tasks', 'Sandbox'],
        [...containers.values()].map((e) => ({
          attrs: { class: 'container-row' },
          cells: [e.c ? code(e.c.value) : '-', code(e.x.t.executor_id || e.x.t.id),
            e.x.fw ? fwLink(e.x.fw, e.x.fw.name || e.x.fw.id) : '-',
            e.tasks.map((y, i) => [i ? ', ' : '', h('a', { href: taskHref(y.t.framework_id || y.fw.id, y.t.id) }, y.t.id)]),
            h('span', { class: 'links' }, sandboxLinks(e.x.t, e.x.fw, false))],
        })), { id: 'agent-containers', empty: 'No running containers' })),
      section('Active tasks', taskTable(running, { framework: true, id: 'agent-active-tasks' })),
      section('Completed tasks', taskTable(on.filter((x) => x.done).sort(byNewest).slice(0, 100), { framework: true, id: 'agent-completed-tasks' })),
    ];
  }

  function notFound(what, id) {
    return [h('h1', null, `No such ${what}`), ML.notice('warn', `This master does not know ${what} `, code(id),
      '. It may have ended long ago, or belong to another master. ', h('a', { href: '#/' }, 'Back to the overview'))];
  }

  // --- rendering ----------------------------------------------------------------

  function view() {
    const { parts } = ML.route();
    ML.markNav(parts[0] === 'slaves' ? 'agents' : parts[0]);
    const [a, b, c, d] = parts;
    switch (a) {
      case undefined: return ['Overview', overview];
      case 'frameworks':
        if (b !== undefined && c === 'tasks' && d !== undefined) return ['Task ' + d, () => taskView(b, d)];
        if (b !== undefined) return ['Framework', () => frameworkView(b)];
        return ['Frameworks', frameworksView];
      case 'agents': case 'slaves':
        return b !== undefined ? ['Agent', () => agentView(b)] : ['Agents', agentsView];
      case 'tasks':
        return ['Tasks', tasksView];
      default:
        return ['Not found', () => [h('h1', null, 'No such page'), h('p', null, h('a', { href: '#/' }, 'Back to the overview'))]];
    }
  }

  function leaderBanner() {
    if (lastError && lastError.status === 0) {
      return ['This master is not the leader. ', h('a', { href: '/master/redirect', id: 'leader-link' }, 'Go to the leading master')];
    }
    if (!model) return null;
    const s = model.s;
    if (s.leader && s.pid && s.leader !== s.pid) {
      const li = s.leader_info || {};
      const addr = li.address && (li.address.hostname || li.address.ip) && li.address.port
        ? `${li.address.hostname || li.address.ip}:${li.address.port}`
        : li.hostname && li.port ? `${li.hostname}:${li.port}` : hostOf(s.leader);
      return ['This master is not the leader; the leading master is ',
        h('a', { href: `${location.protocol}//${addr}/${location.hash}`, id: 'leader-link', dataset: { testid: 'leader-link' } }, addr), '.'];
    }
    if (s.elected === false || s.leading === false) {
      return ['This master is not the leader and no leader is known yet. ', h('a', { href: '/master/redirect', id: 'leader-link' }, 'Try the leading master')];
    }
    return null;
  }

  function render(scrollTop) {
    const [title, build] = view();
    document.title = `${title} · ${ML.config.title}`;
    const lb = leaderBanner();
    if (lb) ML.banner(lb, 'warn');
    else if (lastError && model) ML.banner(['Cannot reach the master (', lastError.message, '); showing the last state, retrying.'], 'error');
    else ML.banner(null);
    if (!model) {
      ML.swap(main, h('div', null, lastError
        ? ML.notice('error', 'Cannot load the master state: ', lastError.message, '. Retrying every few seconds.')
        : h('p', { class: 'muted' }, 'Loading…')));
      return;
    }
    ML.swap(main, h('div', null, build()));
    if (scrollTop) window.scrollTo(0, 0);
  }

  async function load() {
    try {
      const s = await ML.getJSON(ML.config.stateURL, { redirect: 'manual' });
      model = index(s);
      lastError = null;
      ML.setStatus('updated ' + ML.time(Date.now() / 1000).slice(11));
    } catch (e) {
      lastError = e;
      ML.setStatus('update failed', true);
    }
    render(false);
  }

  window.addEventListener('hashchange', () => render(true));
  if (filterBox) filterBox.addEventListener('input', () => render(false));
  ML.every(ML.config.refreshMS, load);
})();
