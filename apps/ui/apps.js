// The apps service's page: its apps with their instances, health and
// deployments, a New App form, an app's page with its tasks (linked to
// their sandboxes on the agents) and its scale, restart, suspend and
// destroy buttons. It speaks only the service's own Marathon API, with
// the helpers of the cluster's pages (app.js, ML).
'use strict';

(() => {
  const { h } = ML;
  const main = document.getElementById('main');
  let stop = null;
  let info = null;

  // --- API ----------------------------------------------------------------

  // call sends a change and returns its JSON answer, or throws an Error
  // whose lines are Marathon's message and details.
  async function call(method, url, body) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const r = await fetch(url, init);
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!r.ok) {
      const lines = [(json && json.message) || `${r.status} ${text}`];
      for (const d of (json && json.details) || []) lines.push(`${d.path}: ${(d.errors || []).join(', ')}`);
      const e = new Error(lines.join('\n'));
      e.lines = lines;
      throw e;
    }
    return json;
  }

  const appURL = (id) => '/v2/apps' + id.split('/').map(encodeURIComponent).join('/');
  const appHref = (id) => '#/apps' + id;

  // status is the app's state as Marathon's UI words it.
  function status(a) {
    if ((a.deployments || []).length) return 'Deploying';
    if (a.instances === 0) return 'Suspended';
    if (a.tasksRunning < a.instances) return 'Waiting';
    return 'Running';
  }

  function health(a) {
    if (!(a.healthChecks || []).length) return h('span', { class: 'muted' }, 'no checks');
    const bad = a.tasksUnhealthy || 0;
    return h('span', { class: bad ? 'health-bad' : 'health-ok' }, `${a.tasksHealthy || 0} healthy` + (bad ? `, ${bad} unhealthy` : ''));
  }

  function what(a) {
    const img = a.container && a.container.docker && a.container.docker.image;
    return img ? ML.code('docker: ' + img) : ML.code(a.cmd || (a.args || []).join(' '));
  }

  // --- pages --------------------------------------------------------------

  function appsPage() {
    return ML.every(ML.config.refreshMS, async () => {
      let apps, deps;
      try {
        [apps, deps] = await Promise.all([ML.getJSON('/v2/apps?embed=apps.counts&embed=apps.deployments'), ML.getJSON('/v2/deployments')]);
      } catch (e) {
        ML.setStatus('cannot reach the apps service: ' + e.message, true);
        return;
      }
      ML.setStatus('');
      const rows = apps.apps.map((a) => ({
        attrs: { dataset: { app: a.id, status: status(a) } },
        cells: [h('a', { href: appHref(a.id), class: 'app-link' }, a.id), what(a),
          h('span', { class: 'instances' }, `${a.tasksRunning} / ${a.instances}`), health(a),
          h('span', { class: 'status' }, status(a)), ML.num(a.cpus), ML.num(a.mem, 0)],
      }));
      ML.swap(main, h('div', null,
        h('div', { class: 'controls' }, h('a', { class: 'button', id: 'new-app', href: '#/new' }, 'New App')),
        ML.section('Applications', ML.table(['ID', 'Command or image', 'Running', 'Health', 'Status', 'CPUs', 'Mem (MB)'], rows,
          { id: 'apps-table', empty: 'No apps yet: create one with New App.' })),
        ML.section('Deployments in progress', deploymentsTable(deps))));
    });
  }

  function deploymentsTable(deps) {
    return ML.table(['ID', 'Apps', 'Step', 'Current actions', ''], deps.map((d) => ({
      attrs: { dataset: { deployment: d.id } },
      cells: [ML.code(d.id), (d.affectedApps || []).map((id) => h('div', null, h('a', { href: appHref(id) }, id))),
        `${d.currentStep} / ${d.totalSteps}`,
        (d.currentActions || []).map((x) => h('div', null, `${x.action} ${x.app}`)),
        h('button', { type: 'button', class: 'rollback', onclick: () => act(() => call('DELETE', '/v2/deployments/' + encodeURIComponent(d.id))) }, 'Roll back')],
    })), { id: 'deployments-table', empty: 'None' });
  }

  function deploymentsPage() {
    return ML.every(ML.config.refreshMS, async () => {
      let deps;
      try {
        deps = await ML.getJSON('/v2/deployments');
      } catch (e) {
        ML.setStatus('cannot reach the apps service: ' + e.message, true);
        return;
      }
      ML.setStatus('');
      ML.swap(main, h('div', null, ML.section('Deployments in progress', deploymentsTable(deps))));
    });
  }

  // act runs a change, showing its error in the banner.
  async function act(fn) {
    try {
      await fn();
      ML.banner(null);
    } catch (e) {
      ML.banner(e.message, 'error');
    }
  }

  function sandboxLinks(t) {
    if (!t.agentUrl || !info) return [];
    const p = `/frameworks/${info.frameworkId}/executors/${t.id}/runs/latest`;
    const base = t.agentUrl.replace(/\/$/, '') + '/#/';
    return [
      h('a', { href: base + 'sandbox?path=' + ML.encPath(p), class: 'sandbox-link' }, 'Sandbox'), ' ',
      h('a', { href: base + 'file?path=' + ML.encPath(p + '/stdout'), class: 'stdout-link' }, 'stdout'), ' ',
      h('a', { href: base + 'file?path=' + ML.encPath(p + '/stderr'), class: 'stderr-link' }, 'stderr'),
    ];
  }

  function taskHealth(t) {
    const rs = t.healthCheckResults || [];
    if (!rs.length) return '-';
    const ok = rs.every((r) => r.alive);
    return h('span', { class: ok ? 'health-ok' : 'health-bad' }, ok ? 'healthy' : 'unhealthy');
  }

  function appPage(id) {
    let destroyArmed = false;
    return ML.every(ML.config.refreshMS, async () => {
      let a;
      try {
        info = info || await ML.getJSON('/v2/info');
        a = (await ML.getJSON(appURL(id) + '?embed=app.tasks&embed=app.counts&embed=app.deployments&embed=app.lastTaskFailure')).app;
      } catch (e) {
        if (e.status === 404) {
          ML.swap(main, h('div', null, ML.crumbs([{ label: 'Applications', href: '#/' }, { label: id }], 'breadcrumbs'),
            ML.notice('info', `App ${id} does not exist (any more).`)));
          return;
        }
        ML.setStatus('cannot reach the apps service: ' + e.message, true);
        return;
      }
      ML.setStatus('');
      const master = info.marathon_config && info.marathon_config.mesos_leader_ui_url;
      const scaleInput = h('input', { type: 'number', min: '0', id: 'scale-to', value: String(a.instances), 'aria-label': 'Instances' });
      const tasks = (a.tasks || []).map((t) => ({
        attrs: { dataset: { task: t.id, state: t.state } },
        cells: [master ? h('a', { href: master.replace(/\/$/, '') + '/#/frameworks/' + encodeURIComponent(info.frameworkId) + '/tasks/' + encodeURIComponent(t.id), class: 'task-link' }, t.id) : ML.code(t.id),
          t.host, (t.ports || []).join(', ') || '-', ML.stateBadge(t.state), taskHealth(t), t.startedAt || '-', t.version,
          h('span', { class: 'links' }, sandboxLinks(t))],
      }));
      const fail = a.lastTaskFailure;
      ML.swap(main, h('div', null,
        ML.crumbs([{ label: 'Applications', href: '#/' }, { label: a.id }], 'breadcrumbs'),
        h('div', { class: 'controls', id: 'app-controls' },
          scaleInput,
          h('button', { type: 'button', id: 'scale', onclick: () => act(() => call('PUT', appURL(id), { instances: Number(document.getElementById('scale-to').value) })) }, 'Scale'),
          h('button', { type: 'button', id: 'restart', onclick: () => act(() => call('POST', appURL(id) + '/restart')) }, 'Restart'),
          h('button', { type: 'button', id: 'suspend', disabled: a.instances === 0, onclick: () => act(() => call('PUT', appURL(id), { instances: 0 })) }, 'Suspend'),
          h('button', {
            type: 'button', id: 'destroy', class: 'danger', onclick: (ev) => {
              if (!destroyArmed) {
                destroyArmed = true;
                ev.target.textContent = 'Really destroy?';
                return;
              }
              act(async () => {
                await call('DELETE', appURL(id));
                location.hash = '#/';
              });
            },
          }, destroyArmed ? 'Really destroy?' : 'Destroy')),
        ML.info([['Status', h('span', { id: 'app-status' }, status(a))], ['Instances', h('span', { id: 'app-instances' }, `${a.tasksRunning} running of ${a.instances}`)],
          ['Health', health(a)], ['Run', what(a)], ['CPUs', ML.num(a.cpus)], ['Mem', ML.num(a.mem, 0) + ' MB'], ['Version', a.version],
          ['Deployments', (a.deployments || []).map((d) => d.id).join(', ')],
          ['Last failure', fail ? `${fail.state} ${fail.message || ''} (${fail.timestamp})` : '']], 'app-info'),
        ML.section('Tasks', ML.table(['ID', 'Host', 'Ports', 'State', 'Health', 'Started', 'Version', ''], tasks, { id: 'tasks-table', empty: 'No tasks' })),
        ML.section('Definition', h('pre', { class: 'definition' }, JSON.stringify(definition(a), null, 2)))));
    });
  }

  // definition is an app as GET shows it, without what is embedded.
  function definition(a) {
    const d = Object.assign({}, a);
    for (const k of ['tasks', 'tasksRunning', 'tasksStaged', 'tasksHealthy', 'tasksUnhealthy', 'deployments', 'lastTaskFailure', 'readinessCheckResults']) delete d[k];
    return d;
  }

  // --- New App ------------------------------------------------------------

  const field = (label, input, hint) => [h('label', { for: input.id }, label), input, hint ? h('div', { class: 'hint' }, hint) : null];

  // fromForm builds the app definition the form says.
  function fromForm(f) {
    const v = (name) => f.elements[name].value.trim();
    const a = { id: v('id'), cpus: Number(v('cpus')), mem: Number(v('mem')), instances: Number(v('instances')) };
    if (v('cmd')) a.cmd = v('cmd');
    if (v('image')) a.container = { type: 'DOCKER', docker: { image: v('image') } };
    const ports = v('ports').split(',').map((s) => s.trim()).filter(Boolean);
    if (ports.length) a.portDefinitions = ports.map((p) => ({ port: Number(p), protocol: 'tcp' }));
    const env = {};
    for (const line of v('env').split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) env[line.slice(0, i).trim()] = line.slice(i + 1);
    }
    if (Object.keys(env).length) a.env = env;
    const cons = v('constraints').split('\n').map((l) => l.trim()).filter(Boolean).map((l) => l.split(':'));
    if (cons.length) a.constraints = cons;
    const proto = v('hc-protocol');
    if (proto) {
      const hc = { protocol: proto, gracePeriodSeconds: 30, intervalSeconds: 10, timeoutSeconds: 5, maxConsecutiveFailures: 3 };
      if (proto === 'COMMAND') hc.command = { value: v('hc-path') };
      else {
        hc.portIndex = 0;
        if (proto.endsWith('HTTP') || proto.endsWith('HTTPS')) hc.path = v('hc-path') || '/';
      }
      a.healthChecks = [hc];
    }
    return a;
  }

  function newAppPage() {
    const errors = h('ul', { class: 'form-errors', id: 'form-errors', role: 'alert' });
    const input = (name, attrs) => h('input', Object.assign({ id: 'app-' + name, name }, attrs || {}));
    const area = (name, attrs) => h('textarea', Object.assign({ id: 'app-' + name, name }, attrs || {}));
    const protoSelect = h('select', { id: 'app-hc-protocol', name: 'hc-protocol' },
      ['', 'MESOS_HTTP', 'MESOS_TCP', 'HTTP', 'TCP', 'COMMAND'].map((p) => h('option', { value: p }, p || 'none')));
    const json = area('json', { class: 'json', spellcheck: 'false' });
    const formFields = h('div', { class: 'form-fields', id: 'form-fields' });
    const jsonFields = h('div', { class: 'form-fields', id: 'json-fields', hidden: true });
    let jsonMode = false;
    const form = h('form', { class: 'app-form', id: 'new-app-form', novalidate: true });
    formFields.append(...[
      field('ID', input('id', { placeholder: '/group/name', required: true }), 'Marathon ids: lowercase letters, digits, hyphens; nested with /'),
      field('Command', input('cmd', { placeholder: 'python3 -m http.server $PORT0' })),
      field('Docker image', input('image', { placeholder: 'nginx:alpine' }), 'a command, an image, or both'),
      field('CPUs', input('cpus', { type: 'number', step: '0.01', min: '0', value: '0.1' })),
      field('Memory (MB)', input('mem', { type: 'number', step: '1', min: '0', value: '64' })),
      field('Instances', input('instances', { type: 'number', step: '1', min: '0', value: '1' })),
      field('Ports', input('ports', { placeholder: '0, 0' }), 'service ports, comma-separated; 0: one assigned ($PORT0, $PORT1... in the task)'),
      field('Environment', area('env', { placeholder: 'KEY=value' }), 'one KEY=value a line'),
      field('Constraints', area('constraints', { placeholder: 'hostname:UNIQUE' }), 'one field:OPERATOR[:value] a line'),
      field('Health check', protoSelect),
      field('Health path or command', input('hc-path', { placeholder: '/' })),
    ].flat().filter(Boolean));
    jsonFields.append(...field('JSON', json, 'the whole definition, as POST /v2/apps takes it'));
    const toggle = h('button', {
      type: 'button', id: 'json-mode', onclick: () => {
        jsonMode = !jsonMode;
        if (jsonMode) json.value = JSON.stringify(fromForm(form), null, 2);
        formFields.hidden = jsonMode;
        jsonFields.hidden = !jsonMode;
        toggle.textContent = jsonMode ? 'Form mode' : 'JSON mode';
      },
    }, 'JSON mode');
    form.append(formFields, jsonFields, h('div', { class: 'form-actions' },
      h('button', { type: 'submit', id: 'create-app' }, 'Create Application'), toggle, h('a', { class: 'button', href: '#/' }, 'Cancel')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      errors.replaceChildren();
      let body;
      try {
        body = jsonMode ? JSON.parse(json.value) : fromForm(form);
      } catch (e) {
        errors.append(h('li', null, 'The JSON does not parse: ' + e.message));
        return;
      }
      try {
        const a = await call('POST', '/v2/apps', body);
        location.hash = appHref(a.id);
      } catch (e) {
        errors.append(...(e.lines || [e.message]).map((l) => h('li', null, l)));
      }
    });
    main.replaceChildren(h('div', null, ML.crumbs([{ label: 'Applications', href: '#/' }, { label: 'New App' }], 'breadcrumbs'),
      ML.section('New App', errors, form)));
    return null;
  }

  // --- routing ------------------------------------------------------------

  function navigate() {
    if (stop) stop();
    stop = null;
    ML.banner(null);
    const { parts } = ML.route();
    const first = parts[0] || '';
    ML.markNav(first === 'apps' ? '' : first);
    switch (first) {
      case 'new':
        stop = newAppPage();
        break;
      case 'deployments':
        stop = deploymentsPage();
        break;
      case 'apps':
        stop = appPage('/' + parts.slice(1).join('/'));
        break;
      default:
        stop = appsPage();
    }
  }

  window.addEventListener('hashchange', navigate);
  navigate();
})();
