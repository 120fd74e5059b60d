'use strict';
// Drives `mesolite apps` with npm's marathon-node, a Marathon client
// written against Marathon itself: create, scale, restart, kill with
// scale, versions, queue, tasks, deployments, the event stream, destroy;
// groups created with a dependency, scaled by a factor and destroyed.
// Run by apps/marathonnode_test.go with MARATHON_URL set; exits non-zero
// on the first thing that is not as Marathon would answer.
const assert = require('assert');
const marathon = require('marathon-node')(process.env.MARATHON_URL);

const APP = '/node/sleeper';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    const got = await fn();
    if (got) return got;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(100);
  }
}

async function settled(instances) {
  const { app } = await marathon.app.getOne(APP);
  return app.deployments.length === 0 && app.tasksRunning === instances && app.tasks.length === instances ? app : null;
}

async function main() {
  assert.strictEqual((await marathon.misc.ping()).trim(), 'pong');
  const info = await marathon.info.get();
  assert.strictEqual(info.name, 'marathon');
  assert.ok(info.frameworkId, 'a framework id in /v2/info');

  const events = [];
  const es = marathon.events.createEventSource({ eventType: ['deployment_success', 'status_update_event'] });
  for (const type of ['deployment_success', 'status_update_event']) {
    es.addEventListener(type, (e) => events.push(JSON.parse(e.data)));
  }
  await new Promise((resolve, reject) => { es.onopen = resolve; es.onerror = reject; });

  const created = await marathon.app.create({ id: APP, cmd: 'sleep 600', cpus: 0.1, mem: 16, instances: 2 });
  assert.strictEqual(created.id, APP);
  let app = await until('2 instances', () => settled(2));
  console.log('created', app.id, 'tasks', app.tasks.map((t) => t.id).join(' '));

  const scaled = await marathon.app.update(APP, { instances: 3 });
  assert.ok(scaled.deploymentId, 'a deployment for the scale');
  await until('deployment_success of the scale', async () => events.find((e) => e.eventType === 'deployment_success' && e.id === scaled.deploymentId));
  app = await until('3 instances', () => settled(3));
  console.log('scaled to', app.instances);

  const before = app.tasks.map((t) => t.id);
  const restarted = await marathon.app.restart(APP);
  assert.ok(restarted.deploymentId);
  app = await until('a restart', async () => {
    const a = await settled(3);
    return a && a.tasks.every((t) => !before.includes(t.id)) ? a : null;
  });
  console.log('restarted: new tasks', app.tasks.map((t) => t.id).join(' '));

  const killed = await marathon.app.killTask(APP, app.tasks[0].id, true);
  assert.ok(killed.deploymentId, 'a deployment for kill with scale');
  app = await until('2 instances after kill with scale', () => settled(2));
  assert.strictEqual(app.instances, 2);

  const versions = await marathon.app.getVersions(APP);
  assert.ok(versions.versions.length >= 4, 'versions: ' + versions.versions);
  const first = await marathon.app.getVersion(APP, versions.versions[versions.versions.length - 1]);
  assert.strictEqual(first.instances, 2);

  const tasks = await marathon.tasks.getList();
  assert.strictEqual(tasks.tasks.filter((t) => t.appId === APP).length, 2);
  const queue = await marathon.queue.get();
  assert.deepStrictEqual(queue.queue, []);
  const list = await marathon.app.getList({ embed: 'apps.tasks' });
  assert.strictEqual(list.apps.length, 1);
  assert.strictEqual(list.apps[0].tasks.length, 2);
  assert.ok(events.some((e) => e.eventType === 'status_update_event' && e.appId === APP && e.taskStatus === 'TASK_RUNNING'));

  await marathon.app.destroy(APP);
  await until('the app gone', async () => {
    try {
      await marathon.app.getOne(APP);
      return false;
    } catch (err) {
      return err.statusCode === 404;
    }
  });
  await until('no deployment left', async () => (await marathon.deployments.getList()).length === 0);

  // Groups: created with a dependency, scaled by a factor, destroyed.
  const group = {
    id: '/node/grp',
    apps: [
      { id: 'back', cmd: 'sleep 600', cpus: 0.05, mem: 16, instances: 1 },
      { id: 'front', cmd: 'sleep 600', cpus: 0.05, mem: 16, instances: 1, dependencies: ['back'] },
    ],
  };
  const made = await marathon.groups.create(group);
  assert.ok(made.deploymentId && made.version, 'a deployment for the group: ' + JSON.stringify(made));
  await until('deployment_success of the group', async () => events.find((e) => e.eventType === 'deployment_success' && e.id === made.deploymentId));
  let g = await marathon.groups.getOne('node/grp');
  assert.deepStrictEqual(g.apps.map((a) => a.id).sort(), ['/node/grp/back', '/node/grp/front']);
  const up = await marathon.groups.update('node/grp', { scaleBy: 2 }, false);
  await until('deployment_success of scaleBy', async () => events.find((e) => e.eventType === 'deployment_success' && e.id === up.deploymentId));
  g = await marathon.groups.getOne('node/grp');
  assert.deepStrictEqual(g.apps.map((a) => a.instances), [2, 2]);
  const all = await marathon.groups.getList();
  assert.strictEqual(all.id, '/');
  const gone = await marathon.groups.destroy('node/grp', false);
  assert.ok(gone.deploymentId);
  await until('the group gone', async () => {
    try {
      await marathon.groups.getOne('node/grp');
      return false;
    } catch (err) {
      return err.statusCode === 404;
    }
  });
  console.log('groups: ok');
  es.close();
  console.log('marathon-node: ok');
}

main().catch((err) => {
  console.error('marathon-node:', err && err.stack ? err.stack : err);
  process.exit(1);
});
