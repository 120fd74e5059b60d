// The agent's pages: its executors (from /state), the sandbox browser
// (/files/browse) and the log viewer, which opens at the end of a file and
// follows it live over /files/stream (server-sent events), falling back to
// polling /files/read like Mesos's pailer.
'use strict';

(() => {
  const { h, table, info, section, code, num, mb } = ML;
  const main = document.getElementById('main');
  const files = (op, params) => `${ML.config.filesURL}/${op}?${ML.query(params)}`;
  const sandboxHref = (p) => '#/sandbox?path=' + ML.encPath(p);
  const fileHref = (p) => '#/file?path=' + ML.encPath(p);

  // --- errors -------------------------------------------------------------------

  // failure explains a files API error in words; the GC case gets its own
  // notice because it is not a bug: the sandbox was removed on purpose.
  function failure(e, path) {
    if (ML.gone(e)) {
      return h('div', { class: 'notice notice-warn', id: 'sandbox-gone', dataset: { testid: 'sandbox-gone' }, role: 'status' },
        h('strong', null, 'This sandbox was garbage collected.'),
        ' The agent removed it some time after its executor ended (see --gc_delay and --gc_disk_headroom), so ',
        code(path), ' is no longer available.');
    }
    const why = {
      400: 'The agent refused the request',
      401: 'The agent wants credentials',
      403: 'Not allowed: the path leads outside its sandbox or you may not read it',
      404: 'No such file or directory',
      503: 'The agent is not ready (it has not registered with a master yet)',
    }[e.status] || 'Request failed';
    return ML.notice('error', h('strong', null, why), ': ', code(path), e.body ? [' — ', e.body.trim()] : [' — ', e.message]);
  }

  // --- breadcrumbs ----------------------------------------------------------------

  // crumbs links each directory of path; a sandbox root
  // /frameworks/F/executors/E/runs/R is one step, named after its executor.
  function crumbs(path) {
    const segs = path.split('/').filter(Boolean);
    const items = [{ label: 'Executors', href: '#/' }];
    let i = 0;
    if (segs.length >= 6 && segs[0] === 'frameworks' && segs[2] === 'executors' && segs[4] === 'runs') {
      const root = '/' + segs.slice(0, 6).join('/');
      items.push({ label: `sandbox of ${segs[3]}`, href: sandboxHref(root), title: root });
      i = 6;
    }
    for (; i < segs.length; i++) {
      const p = '/' + segs.slice(0, i + 1).join('/');
      items.push({ label: segs[i], href: sandboxHref(p), title: p });
    }
    return ML.crumbs(items, 'breadcrumbs');
  }

  // backLink is a paragraph that, once the agent's state says which master
  // it serves, links the sandbox of path back to its task (or, for a
  // custom executor with several tasks, its framework) on the master's
  // pages.
  const backLinks = new Map(); // path -> [href, text], once known
  function backLink(path) {
    const p = h('p', { class: 'backlink', id: 'task-back' });
    const known = backLinks.get(path);
    if (known) {
      p.append(h('a', { href: known[0], id: 'task-back-link' }, known[1]));
      return p;
    }
    const segs = path.split('/').filter(Boolean);
    if (segs.length < 4 || segs[0] !== 'frameworks' || segs[2] !== 'executors') return p;
    const fwID = segs[1];
    const exID = segs[3];
    const ti = segs.indexOf('tasks', 4);
    ML.getJSON(ML.config.stateURL).then((s) => {
      const master = s.master_hostname || '';
      if (!master.includes(':')) return;
      let task = ti > 0 && segs[ti + 1] ? segs[ti + 1] : '';
      if (!task) {
        const fw = [...(s.frameworks || []), ...(s.completed_frameworks || [])].find((f) => f.id === fwID);
        const ex = fw && [...(fw.executors || []), ...(fw.completed_executors || [])].find((e) => e.id === exID);
        const tasks = ex ? [...(ex.tasks || []), ...(ex.queued_tasks || []), ...(ex.completed_tasks || [])] : [];
        task = tasks.length === 1 ? tasks[0].id : tasks.some((t) => t.id === exID) ? exID : '';
      }
      const base = `${location.protocol}//${master}/#/frameworks/${encodeURIComponent(fwID)}`;
      const link = task ? [`${base}/tasks/${encodeURIComponent(task)}`, `← task ${task} on the master`] : [base, '← its framework on the master'];
      backLinks.set(path, link);
      p.replaceChildren(h('a', { href: link[0], id: 'task-back-link' }, link[1]));
    }).catch(() => {});
    return p;
  }

  // --- the agent's executors ---------------------------------------------------------

  function overviewView() {
    return ML.every(ML.config.refreshMS, async () => {
      let s;
      try {
        s = await ML.getJSON(ML.config.stateURL);
        ML.setStatus('updated ' + ML.time(Date.now() / 1000).slice(11));
      } catch (e) {
        ML.setStatus('update failed', true);
        ML.swap(main, h('div', null, h('h1', null, 'Agent'), ML.notice('error', 'Cannot load the agent state: ', e.message)));
        return;
      }
      document.title = `Agent ${s.hostname || s.id || ''} · ${ML.config.title}`;
      ML.swap(main, h('div', null, agentPage(s)));
    });
  }

  function executorRows(fw, list, done) {
    return list.map((ex) => {
      const p = ex.virtual_directory || `/frameworks/${fw.id}/executors/${ex.id}/runs/${ex.container || 'latest'}`;
      const tasks = [...(ex.tasks || []), ...(ex.queued_tasks || []), ...(ex.completed_tasks || [])];
      return {
        attrs: { class: 'executor-row', dataset: { testid: 'executor-row', executorId: ex.id } },
        cells: [
          code(ex.id), ex.name || '', h('span', { title: fw.id }, fw.name || fw.id),
          tasks.map((t, i) => [i ? ', ' : '', h('span', { title: t.state }, t.id), ' ', ML.stateBadge(t.state)]),
          ex.container ? code(ex.container) : '-',
          done ? 'ended' : 'running',
          h('span', { class: 'links' },
            h('a', { href: sandboxHref(p), class: 'sandbox sandbox-link' }, 'Sandbox'),
            h('a', { href: fileHref(p + '/stdout'), class: 'sandbox stdout-link' }, 'stdout'),
            h('a', { href: fileHref(p + '/stderr'), class: 'sandbox stderr-link' }, 'stderr')),
        ],
      };
    });
  }

  function agentPage(s) {
    const rows = [];
    const old = [];
    for (const fw of s.frameworks || []) {
      rows.push(...executorRows(fw, fw.executors || [], false));
      old.push(...executorRows(fw, fw.completed_executors || [], true));
    }
    for (const fw of s.completed_frameworks || []) {
      old.push(...executorRows(fw, [...(fw.executors || []), ...(fw.completed_executors || [])], true));
    }
    const r = s.resources || {};
    const master = s.master_hostname || '';
    const cols = ['Executor', 'Name', 'Framework', 'Tasks', 'Container', 'Status', 'Sandbox'];
    return [
      h('h1', null, 'Agent ', h('span', { class: 'id' }, s.hostname || s.id || '')),
      h('div', { class: 'grid' },
        section('Details', info([
          ['ID', code(s.id)],
          ['Server', code((s.pid || '').replace(/^[^@]*@/, ''))],
          ['Hostname', s.hostname],
          ['Version', s.version],
          ['Master', master.includes(':') ? h('a', { href: `${location.protocol}//${master}/`, id: 'master-link' }, master) : master],
          ['Started', ML.timeEl(s.start_time)],
          ['Attributes', ML.attrs(s.attributes)],
        ], 'agent-info')),
        section('Resources', table(['CPUs', 'GPUs', 'Mem', 'Disk', 'Ports'],
          [[num(r.cpus), num(r.gpus), mb(r.mem), mb(r.disk), r.ports || '-']], { class: 'compact' }))),
      section('Executors', table(cols, rows, { id: 'executors', empty: 'No executors running' })),
      section('Ended executors', table(cols, old, { id: 'completed-executors', empty: 'None' })),
    ];
  }

  // --- the sandbox browser -------------------------------------------------------------

  function browseView(path) {
    document.title = `${path.split('/').pop() || '/'} · ${ML.config.title}`;
    if (!path) {
      main.replaceChildren(h('h1', null, 'Sandbox'), ML.notice('warn', 'No path given. ', h('a', { href: '#/' }, 'Pick an executor.')));
      return () => {};
    }
    return ML.every(ML.config.refreshMS, async () => {
      let list;
      try {
        list = await ML.getJSON(files('browse', { path }));
      } catch (e) {
        ML.swap(main, h('div', null, crumbs(path), h('h1', null, 'Sandbox'), failure(e, path)));
        return;
      }
      ML.swap(main, h('div', null, listing(path, list)));
    });
  }

  const natural = new Intl.Collator(undefined, { numeric: true });

  function listing(path, list) {
    const entries = list.map((f) => ({ ...f, name: f.path.slice(f.path.lastIndexOf('/') + 1), dir: (f.mode || '').startsWith('d') }));
    entries.sort((a, b) => (b.dir - a.dir) || natural.compare(a.name, b.name));
    const rows = entries.map((f) => ({
      attrs: { class: 'file-row', dataset: { testid: 'file-row', name: f.name } },
      cells: [
        h('code', null, f.mode || ''), String(f.nlink ?? ''), f.uid ?? '', f.gid ?? '',
        f.dir ? '' : h('span', { title: `${f.size} bytes` }, ML.bytes(f.size)),
        ML.timeEl(f.mtime),
        h('a', { href: f.dir ? sandboxHref(f.path) : fileHref(f.path), class: 'file-link' + (f.dir ? ' dir' : ''), dataset: { testid: 'file-link', name: f.name } },
          f.name + (f.dir ? '/' : '')),
        f.dir ? '' : h('a', { href: files('download', { path: f.path }), class: 'download', download: f.name, title: 'Download ' + f.name }, 'download'),
      ],
    }));
    return [
      crumbs(path),
      backLink(path),
      h('h1', null, 'Sandbox ', h('span', { class: 'id' }, path)),
      table(['Mode', 'Links', 'UID', 'GID', { label: 'Size', class: 'num' }, 'Modified', 'Name', ''], rows,
        { id: 'listing', testid: 'listing', empty: 'Empty directory', class: 'listing' }),
    ];
  }

  // --- the log viewer ---------------------------------------------------------------------

  // PAGE is what the viewer shows first and loads per "earlier" step: the
  // end of the file, like Mesos's pailer (one /files/read answer is at most
  // 64 KiB).
  const PAGE = 64 * 1024;
  // MAX_CHARS bounds what a long-running tail keeps in the page.
  const MAX_CHARS = 4 * 1024 * 1024;
  const POLL_MS = 1000;

  function fileView(path) {
    if (!path) {
      main.replaceChildren(h('h1', null, 'File'), ML.notice('warn', 'No path given. ', h('a', { href: '#/' }, 'Pick an executor.')));
      return () => {};
    }
    const name = path.split('/').pop();
    document.title = `${name} · ${ML.config.title}`;
    let start = 0; // file offset of the first byte shown of the current file
    let end = 0; // file offset after the last byte shown
    let shown = 0; // characters in the viewer
    let stopped = false;
    let paging = false;
    let es = null;
    let timer = null;
    let failures = 0;
    let partial = false; // the stream starts mid-file: drop its first, partial line

    const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true, dataset: { testid: 'log-follow' } });
    const earlier = h('button', { type: 'button', id: 'log-earlier', dataset: { testid: 'log-earlier' }, disabled: true }, 'Load earlier');
    const toEnd = h('button', { type: 'button', id: 'log-end', dataset: { testid: 'log-end' } }, 'Jump to end');
    const status = h('span', { id: 'log-status', class: 'log-status', role: 'status', dataset: { testid: 'log-status' } }, 'loading…');
    // Each file generation (a new one starts at a truncation or rotation)
    // is a span, so offsets of the live one stay right however the older
    // ones are trimmed.
    let cur = h('span', { class: 'gen' });
    const pre = h('pre', {
      id: 'log-viewer', class: 'log', tabindex: '0', 'aria-label': `contents of ${name}`,
      dataset: { testid: 'log-viewer', state: 'loading', path },
    }, cur);

    main.replaceChildren(
      crumbs(path),
      backLink(path),
      h('div', { class: 'toolbar' },
        h('h1', null, name),
        earlier, toEnd,
        h('label', { for: 'log-follow', class: 'check' }, follow, ' Follow'),
        h('a', { href: files('download', { path }), class: 'button', id: 'log-download', dataset: { testid: 'log-download' }, download: name }, 'Download'),
        status),
      pre);

    const setState = (state, text, cls) => {
      pre.dataset.state = state;
      status.textContent = text;
      status.className = 'log-status ' + (cls || state);
    };

    const atBottom = () => pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const toBottom = () => { pre.scrollTop = pre.scrollHeight; };

    function updateEarlier() {
      earlier.disabled = paging || start <= 0;
      earlier.textContent = start > 0 ? `Load earlier (${ML.bytes(start)} above)` : 'Start of file';
    }

    function append(text) {
      if (!text) return;
      const stick = follow.checked;
      cur.appendChild(document.createTextNode(text));
      shown += text.length;
      if (shown > MAX_CHARS) trim();
      if (stick) toBottom();
    }

    // consume shows bytes that follow end. As the pailer does, a view that
    // opens mid-file starts at a line: the partial first one is dropped.
    function consume(text) {
      if (partial) {
        const i = text.indexOf('\n');
        const cut = i < 0 ? text : text.slice(0, i + 1);
        start += ML.byteLen(cut);
        text = text.slice(cut.length);
        partial = i < 0;
        updateEarlier();
      }
      append(text);
    }

    // trim drops the oldest text down to 3/4 of MAX_CHARS, at a line end.
    function trim() {
      let excess = shown - (MAX_CHARS * 3) / 4;
      while (excess > 0 && pre.firstChild && pre.firstChild !== cur) {
        const n = pre.firstChild;
        const len = n.textContent.length;
        n.remove();
        shown -= len;
        excess -= len;
      }
      while (excess > 0 && cur.firstChild) {
        const n = cur.firstChild;
        if (n.data.length <= excess) {
          start += ML.byteLen(n.data);
          shown -= n.data.length;
          excess -= n.data.length;
          n.remove();
          continue;
        }
        let cut = n.data.indexOf('\n', excess);
        cut = cut < 0 ? n.data.length : cut + 1;
        start += ML.byteLen(n.data.slice(0, cut));
        shown -= cut;
        n.deleteData(0, cut);
        excess = 0;
      }
      updateEarlier();
    }

    // newGeneration marks where the file was truncated or replaced; what
    // follows is read from offset 0 of the new file.
    function newGeneration(...what) {
      const stick = follow.checked;
      pre.appendChild(h('span', { class: 'marker', dataset: { testid: 'log-marker' } }, what));
      cur = h('span', { class: 'gen' });
      pre.appendChild(cur);
      start = end = 0;
      partial = false;
      updateEarlier();
      if (stick) toBottom();
    }

    async function read(offset, length) {
      const p = { path, offset };
      if (length !== undefined) p.length = length;
      return ML.getJSON(files('read', p));
    }

    // readRange reads [from, to) in as many answers as it takes.
    async function readRange(from, to) {
      let out = '';
      let off = from;
      while (off < to) {
        const d = await read(off, to - off);
        if (!d.data) break;
        out += d.data;
        off += ML.byteLen(d.data);
      }
      return out;
    }

    // dropPartialLine cuts text up to its first newline when it does not
    // begin at the start of the file, as the pailer does; it returns the
    // text and the offset it now starts at.
    function dropPartialLine(text, from) {
      if (from === 0) return [text, from];
      const i = text.indexOf('\n');
      if (i < 0 || i === text.length - 1) return [text, from];
      return [text.slice(i + 1), from + ML.byteLen(text.slice(0, i + 1))];
    }

    async function init() {
      let size;
      try {
        size = (await read(-1)).offset;
      } catch (e) {
        if (e.status === 400 && /director/i.test(e.body)) {
          location.replace(sandboxHref(path));
          return;
        }
        return fail(e);
      }
      if (stopped) return;
      // The last page comes over the stream itself, not from a separate
      // read: two requests could see two files when the writer rotates in
      // between, and the stream carries a rotation across for us.
      start = end = Math.max(0, size - PAGE);
      partial = start > 0;
      updateEarlier();
      live();
    }

    function fail(e) {
      if (stopped) return;
      closeStream();
      clearTimeout(timer);
      setState(ML.gone(e) ? 'gone' : 'error', ML.gone(e) ? 'sandbox garbage collected' : 'unavailable', 'error');
      pre.before(failure(e, path));
    }

    function closeStream() {
      if (es) {
        es.close();
        es = null;
      }
    }

    const parse = (s) => {
      try {
        return JSON.parse(s);
      } catch {
        return null;
      }
    };

    // live follows the file from end over server-sent events.
    function live() {
      if (stopped) return;
      if (!window.EventSource) return poll();
      const src = new EventSource(files('stream', { path, offset: end, follow: 'true' }));
      es = src;
      let opened = false;
      // Live from the first heartbeat, which comes once the backlog is sent.
      src.onopen = () => {
        opened = true;
      };
      src.addEventListener('data', (ev) => {
        const d = parse(ev.data);
        if (!d || typeof d.data !== 'string') return;
        if (typeof d.offset === 'number' && d.offset > end) {
          newGeneration(`skipped ${ML.bytes(d.offset - end)} the stream could not deliver`);
          start = end = d.offset;
        }
        consume(d.data);
        end = ev.lastEventId ? Number(ev.lastEventId) : (typeof d.offset === 'number' ? d.offset : end) + ML.byteLen(d.data);
        failures = 0;
      });
      src.addEventListener('heartbeat', () => {
        failures = 0;
        if (pre.dataset.state !== 'live') {
          setState('live', 'following live', 'live');
          if (follow.checked) toBottom();
        }
      });
      src.addEventListener('truncated', () => newGeneration('the file was truncated; following it from its start'));
      src.addEventListener('rotated', (ev) => {
        const d = parse(ev.data) || {};
        if (d.renamed_to) {
          newGeneration('the file was rotated: the lines above are now in ', h('a', { href: fileHref(d.renamed_to) }, d.renamed_to.split('/').pop()));
        } else {
          newGeneration('the file was replaced; following the new one');
        }
      });
      src.addEventListener('deleted', () => {
        closeStream();
        newGeneration('the file was deleted');
        setState('deleted', 'file deleted', 'ended');
      });
      src.addEventListener('eof', () => {
        closeStream();
        setState('ended', 'end of file', 'ended');
      });
      src.onerror = () => {
        if (es !== src) return;
        closeStream();
        if (stopped) return;
        failures++;
        recover(opened);
      };
    }

    // recover decides, after a stream broke, whether the file is gone, the
    // stream should be opened again, or server-sent events do not get
    // through (a proxy) and polling must do.
    async function recover(wasOpen) {
      let size;
      try {
        size = (await read(-1)).offset;
      } catch (e) {
        if (e.status === 404 || e.status === 403) return fail(e);
        size = null;
      }
      if (stopped) return;
      if (size !== null && size < end) newGeneration('the file shrank while the connection was down; following it from its start');
      if (!wasOpen && failures >= 3) return poll();
      setState('reconnecting', 'reconnecting…', 'warn');
      timer = setTimeout(live, Math.min(500 * failures, 5000));
    }

    // poll reads new bytes with /files/read, the way Mesos's pailer does.
    function poll() {
      setState('polling', `polling every ${POLL_MS / 1000} s`, 'live');
      const tick = async () => {
        if (stopped) return;
        let more = false;
        try {
          const d = await read(end, PAGE);
          if (d.data) {
            consume(d.data);
            end += ML.byteLen(d.data);
            more = ML.byteLen(d.data) >= PAGE;
          } else {
            const size = (await read(-1)).offset;
            if (size < end) newGeneration('the file was truncated or rotated; following it from its start');
          }
          setState('polling', `polling every ${POLL_MS / 1000} s`, 'live');
        } catch (e) {
          if (e.status === 404 || e.status === 403) return fail(e);
          setState('polling', 'cannot reach the agent, retrying', 'warn');
        }
        if (!stopped) timer = setTimeout(tick, more ? 0 : POLL_MS);
      };
      tick();
    }

    async function pageBack() {
      if (paging || start <= 0) return;
      paging = true;
      updateEarlier();
      const gen = cur;
      try {
        const from = Math.max(0, start - PAGE);
        let text = await readRange(from, start);
        let at;
        [text, at] = dropPartialLine(text, from);
        if (gen === cur && text) {
          const before = pre.scrollHeight;
          gen.insertBefore(document.createTextNode(text), gen.firstChild);
          shown += text.length;
          pre.scrollTop += pre.scrollHeight - before;
          start = at;
        }
      } catch (e) {
        status.textContent = 'could not load earlier lines: ' + e.message;
      } finally {
        paging = false;
        updateEarlier();
      }
    }

    earlier.addEventListener('click', pageBack);
    toEnd.addEventListener('click', () => {
      follow.checked = true;
      toBottom();
    });
    follow.addEventListener('change', () => {
      if (follow.checked) toBottom();
    });
    pre.addEventListener('scroll', () => {
      follow.checked = atBottom();
      if (pre.scrollTop === 0 && start > 0) pageBack();
    });

    init();
    return () => {
      stopped = true;
      closeStream();
      clearTimeout(timer);
    };
  }

  // --- routing ----------------------------------------------------------------------------

  let stop = null;

  function navigate() {
    if (stop) stop();
    stop = null;
    window.scrollTo(0, 0);
    const { parts, query } = ML.route();
    ML.markNav(parts[0] || '');
    switch (parts[0]) {
      case 'sandbox': case 'browse':
        stop = browseView(query.path || '');
        break;
      case 'file':
        stop = fileView(query.path || '');
        break;
      default:
        stop = overviewView();
    }
  }

  window.addEventListener('hashchange', navigate);
  navigate();
})();
