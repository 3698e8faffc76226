// The mimecast-exporter monitoring mixin: alerts, Alertmanager inhibit rules
// and the dashboard, from one configuration (config.libsonnet).
(import 'config.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
