// Everything a team may want to change, in one place. Override it where the
// mixin is used, e.g.:
//   (import 'mixin.libsonnet') + { _config+:: { exporterSelector: 'job="mimecast"' } }
local thresholds = import 'thresholds.json';

{
  _config+:: {
    // Selects the exporter's series in every alert and on the dashboard. An
    // exact job name, not a regex on it: set it to your scrape job.
    exporterSelector: 'job="mimecast-exporter"',

    // Where the annotations point.
    runbookURL: 'https://github.com/mimecast-exporter/mimecast-exporter/blob/v0.2.0/docs/runbook.md',  // the release's tag: bumped with it
    dashboardUID: 'mimecast-queue',
    grafanaURL: '',  // e.g. https://grafana.example.com; empty: a path relative to Grafana
    dashboardURL: self.grafanaURL + '/d/' + self.dashboardUID,

    // Severities follow impact. Mail not being delivered pages; the
    // exporter's own trouble is a warning; what only needs a look, a ticket.
    mailNotDeliveredSeverity: 'critical',
    exporterTroubleSeverity: 'warning',
    ticketSeverity: 'info',

    // Thresholds and how long each must hold before the alert fires.
    // The thresholds' one source (thresholds.json): the exporter's status page
    // colours against the same, as its thresholds: configuration's defaults.
    queueBacklogMessages: thresholds.queueBacklogMessages,
    queueBacklogFor: '15m',
    oldestMessageAgeSeconds: thresholds.oldestMessageAgeSeconds,
    oldestMessageFor: '10m',
    manyAttempts: thresholds.manyAttempts,
    manyAttemptsFor: '15m',
    exporterDownFor: '5m',
    accountDownFor: '10m',
    staleDataSeconds: 900,
    staleDataFor: '5m',
    countsAbsentFor: '1h',
    rateLimitedFor: '15m',
    authFailingFor: '5m',
  },
}
