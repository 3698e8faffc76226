// The Grafana dashboard. Its panels are kept as JSON (mimecast-queue.json);
// this file applies the configuration: the exporter selector in the job
// variable (so the job list shows only exporters it selects), the uid, and
// links to the runbook.
{
  local c = $._config,
  local base = import 'mimecast-queue.json',
  local variable(v) =
    if v.name == 'job' then
      local q = 'label_values(mimecast_exporter_build_info{%s}, job)' % c.exporterSelector;
      v { definition: q, query+: { query: q } }
    else v,

  grafanaDashboards+:: {
    'mimecast-queue.json': base {
      uid: c.dashboardUID,
      links: [
        {
          title: 'Runbook',
          type: 'link',
          url: c.runbookURL,
          icon: 'doc',
          tooltip: 'What each alert means and what to do',
          targetBlank: true,
          asDropdown: false,
          includeVars: false,
          keepTime: false,
          tags: [],
        },
      ],
      templating+: { list: [variable(v) for v in base.templating.list] },
    },
  },
}
