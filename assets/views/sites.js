// Spawn sites: live tasks per `tokio::spawn` call with their history of the
// last minute; leaking sites first, with how fast they grow.

import { badge, fill, h, link, note } from '../dom.js';
import { count, perSecond } from '../format.js';
import { indexFindings, rankSites, siteStatus } from '../highlight.js';
import { sparkline } from '../sparkline.js';

export const title = 'Spawn sites';

/** Sites come with every snapshot; no task rows needed. */
export function query() {
  return { limit: 0 };
}

/** Rows drawn at first; thousands of sites stay one click away. */
const SHOWN = 200;

function row(site, index, ctx) {
  const status = siteStatus(site, index);
  const sev = status.badges[0]?.severity;
  const selected = ctx.params.get('site') === String(site.id);
  return h(
    'tr',
    { class: `site${sev ? ` sev-${sev}` : ''}${selected ? ' selected' : ''}`, 'data-site-id': site.id, 'data-problems': status.badges.map((b) => b.kind).join(' ') },
    h('td', {}, link(`#/tasks?site=${site.id}&sort=idle`, h('code', {}, site.location))),
    h('td', { class: 'badges' }, status.badges.map(badge)),
    h('td', { class: 'num' }, count(site.live)),
    h('td', { class: 'spark-cell' }, sparkline(site.history, { label: `live tasks at ${site.location}, one sample a second`, format: count })),
    h(
      'td',
      { class: 'num' },
      status.leak
        ? h('span', { class: 'growth', title: status.leak.message }, `${perSecond(status.leak.perSecond)} (${status.leak.perMinute > 0 ? '+' : ''}${status.leak.perMinute}/min)`)
        : '–',
    ),
    h('td', { class: 'num' }, count(site.running)),
    h('td', { class: 'num' }, count(site.idle)),
    h('td', { class: 'num' }, count(site.spawned)),
    h('td', { class: 'num' }, count(site.completed)),
    h('td', { class: 'num' }, count(site.peak_live)),
  );
}

export function render(el, data, ctx) {
  const index = indexFindings(data.findings);
  const filter = (ctx.params.get('q') ?? '').toLowerCase();
  const sites = rankSites(
    data.sites.filter((s) => s.spawned > 0 && (!filter || s.location.toLowerCase().includes(filter))),
    index,
  );
  const all = ctx.params.get('all') === '1';
  const shown = all ? sites : sites.slice(0, SHOWN);
  const leaking = sites.filter((s) => siteStatus(s, index).leak).length;
  fill(
    el,
    h(
      'form',
      { class: 'filters', onsubmit: (e) => e.preventDefault() },
      h(
        'label',
        {},
        'Location contains ',
        h('input', { name: 'q', value: ctx.params.get('q') ?? '', onchange: (e) => ctx.navigate(`#/sites?q=${encodeURIComponent(e.target.value)}`) }),
      ),
    ),
    leaking
      ? note('warn', `${leaking} spawn site${leaking === 1 ? '' : 's'} leaking: live tasks keep setting new highs.`)
      : note('info', 'No leaking spawn site. A site is flagged after at least 20 one-second samples of a rising floor.'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'sites' },
        h(
          'thead',
          {},
          h('tr', {}, ['Spawn site', 'Problems', 'Live', 'Live, last minute', 'Growth', 'Running', 'Idle', 'Spawned', 'Completed', 'Peak'].map((c) => h('th', { scope: 'col' }, c))),
        ),
        h('tbody', {}, shown.map((s) => row(s, index, ctx))),
      ),
    ),
    sites.length > shown.length ? link(`#/sites?all=1&q=${encodeURIComponent(filter)}`, `show all ${count(sites.length)} sites`) : null,
  );
  const selected = el.querySelector('tr.selected');
  if (selected && ctx.firstRender) selected.scrollIntoView({ block: 'center' });
}
