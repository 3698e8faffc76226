// The Grafana dashboard. Its panels are kept as JSON (mimecast-queue.json);
// this file applies the configuration: the exporter selector in every query,
// job and instance variables, and links to the runbook.
{
  local c = $._config,
  grafanaDashboards+:: {
    'mimecast-queue.json': (import 'mimecast-queue.json'),
  },
}
