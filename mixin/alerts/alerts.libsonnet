// Alerting rules and Alertmanager inhibit rules. Severities follow impact
// (config.libsonnet): mail not delivered pages, the exporter's own trouble is
// a warning, a rate limit is a ticket.
local duration(seconds) =
  if seconds % 3600 == 0 then '%dh' % (seconds / 3600)
  else if seconds % 60 == 0 then '%dm' % (seconds / 60)
  else '%ds' % seconds;

// '15m' -> '15 minutes', '1h' -> 'an hour': durations as a sentence says them.
local words(d) =
  local n = std.parseInt(std.substr(d, 0, std.length(d) - 1));
  local unit = { s: 'second', m: 'minute', h: 'hour' }[std.substr(d, std.length(d) - 1, 1)];
  if n == 1 then (if unit == 'hour' then 'an hour' else 'a ' + unit)
  else '%d %ss' % [n, unit];

{
  local c = $._config,
  local annotations(alert, summary, description) = {
    summary: summary,
    description: description,
    runbook_url: c.runbookURL + '#' + std.asciiLower(alert),
    dashboard_url: c.dashboardURL,
  },

  prometheusAlerts+:: {
    groups+: [{
      name: 'mimecast-exporter',
      rules: [
        {
          alert: 'MimecastExporterDown',
          expr: 'up{%s} == 0' % c.exporterSelector,
          'for': c.exporterDownFor,
          labels: { severity: c.exporterTroubleSeverity },
          annotations: annotations(
            'MimecastExporterDown',
            'Prometheus cannot scrape the Mimecast exporter at {{ $labels.instance }}.',
            'Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) for more than %s, so the Mimecast processing queues it watches are not monitored. Check that the exporter process is running, that /-/healthy answers, and the network path from Prometheus to it.' % words(c.exporterDownFor),
          ),
        },
        {
          alert: 'MimecastAccountDown',
          expr: 'mimecast_up{%s} == 0' % c.exporterSelector,
          'for': c.accountDownFor,
          labels: { severity: c.exporterTroubleSeverity },
          annotations: annotations(
            'MimecastAccountDown',
            'Polls of Mimecast account {{ $labels.account }} are failing.',
            'The latest background poll of at least one queue of Mimecast account {{ $labels.account }} has failed for more than %s. Its queue metrics keep the last successful values for poll.stale_after and then disappear. See mimecast_poll_errors_total{account="{{ $labels.account }}"} and the exporter\'s log lines with account={{ $labels.account }} (reason=) for why.' % words(c.accountDownFor),
          ),
        },
        {
          alert: 'MimecastDataStale',
          expr: 'time() - mimecast_last_success_timestamp_seconds{%s} > %d' % [c.exporterSelector, c.staleDataSeconds],
          'for': c.staleDataFor,
          labels: { severity: c.exporterTroubleSeverity },
          annotations: annotations(
            'MimecastDataStale',
            'Mimecast queue data of {{ $labels.account }}/{{ $labels.queue }} is stale.',
            'The latest successful poll of the {{ $labels.queue }} queue of Mimecast account {{ $labels.account }} finished {{ $value | humanizeDuration }} ago (threshold %s). Its queue metrics are no longer served, so the queue alerts cannot fire for it. See mimecast_poll_errors_total and the exporter\'s logs (reason=) for why the polls fail.' % duration(c.staleDataSeconds),
          ),
        },
        {
          // A figure is exact or absent: a queue whose polls succeed without a
          // message count is one MimecastQueueBacklog cannot fire for.
          alert: 'MimecastCountsAbsent',
          expr: 'mimecast_queue_scan_complete{%s} unless on (job, instance, account, queue) mimecast_queue_messages{%s, route!="unknown"}' % [c.exporterSelector, c.exporterSelector],
          'for': c.countsAbsentFor,
          labels: { severity: c.exporterTroubleSeverity },
          annotations: annotations(
            'MimecastCountsAbsent',
            'The Mimecast exporter cannot count the {{ $labels.queue }} queue of {{ $labels.account }}.',
            'For %s, polls of the {{ $labels.queue }} queue of Mimecast account {{ $labels.account }} have succeeded without a message count: Mimecast\'s answers did not allow an exact one (no totalCount, filterBy ignored or refused, counts that contradict the messages read), or poll.max_pages is too small to count a large queue. MimecastQueueBacklog cannot fire for this queue meanwhile. The exporter\'s log says why, once per account (doubt=).' % words(c.countsAbsentFor),
          ),
        },
        {
          alert: 'MimecastQueueBacklog',
          expr: 'mimecast_queue_messages{%s} > %d' % [c.exporterSelector, c.queueBacklogMessages],
          'for': c.queueBacklogFor,
          labels: { severity: c.mailNotDeliveredSeverity },
          annotations: annotations(
            'MimecastQueueBacklog',
            'Mimecast {{ $labels.queue }} queue of {{ $labels.account }} is backing up ({{ $labels.route }}).',
            'The {{ $labels.queue }} queue of Mimecast account {{ $labels.account }} has held more than %d {{ $labels.route }} messages for %s; it holds {{ $value | humanize }} now. Mimecast cannot hand them on: check the destination mail server and Message Center → Processing Queue.' % [c.queueBacklogMessages, words(c.queueBacklogFor)],
          ),
        },
        {
          alert: 'MimecastQueueOldestMessageTooOld',
          expr: 'mimecast_queue_oldest_message_age_seconds{%s} > %d' % [c.exporterSelector, c.oldestMessageAgeSeconds],
          'for': c.oldestMessageFor,
          labels: { severity: c.mailNotDeliveredSeverity },
          annotations: annotations(
            'MimecastQueueOldestMessageTooOld',
            'An {{ $labels.route }} message of Mimecast account {{ $labels.account }} has been queued for over %s.' % words(duration(c.oldestMessageAgeSeconds)),
            'The oldest {{ $labels.route }} message in the {{ $labels.queue }} queue of Mimecast account {{ $labels.account }} was created {{ $value | humanizeDuration }} ago (threshold %s). Mimecast keeps retrying it: check why the destination refuses it in Message Center → Processing Queue.' % duration(c.oldestMessageAgeSeconds),
          ),
        },
        {
          alert: 'MimecastMessagesManyAttempts',
          expr: 'mimecast_queue_max_attempts{%s} >= %d' % [c.exporterSelector, c.manyAttempts],
          'for': c.manyAttemptsFor,
          labels: { severity: c.mailNotDeliveredSeverity },
          annotations: annotations(
            'MimecastMessagesManyAttempts',
            'Mimecast keeps failing to deliver an {{ $labels.route }} message of {{ $labels.account }}.',
            'An {{ $labels.route }} message in the {{ $labels.queue }} queue of Mimecast account {{ $labels.account }} has been tried {{ $value | humanize }} times (threshold %d). Check the reason shown for it in Message Center → Processing Queue.' % c.manyAttempts,
          ),
        },
        {
          alert: 'MimecastRateLimited',
          expr: 'sum by (account) (increase(mimecast_poll_errors_total{%s, reason="rate_limited"}[%s])) > 0' % [c.exporterSelector, c.rateLimitedFor],
          'for': c.rateLimitedFor,
          labels: { severity: c.ticketSeverity },
          annotations: annotations(
            'MimecastRateLimited',
            'Mimecast is rate-limiting the polls of account {{ $labels.account }}.',
            'For %s, polls of Mimecast account {{ $labels.account }} have been failing because Mimecast\'s API rate limit was exhausted ({{ $value | humanize }} in the last %s), so its queue data is getting old. Poll less often (poll.interval) or fewer queues, or find the other integration sharing the limit (mimecast_api_rate_limit_remaining).' % [words(c.rateLimitedFor), words(c.rateLimitedFor)],
          ),
        },
        {
          alert: 'MimecastAuthFailing',
          expr: 'sum by (account, reason) (increase(mimecast_poll_errors_total{%s, reason=~"auth|binding_expired"}[15m])) > 0' % c.exporterSelector,
          'for': c.authFailingFor,
          labels: { severity: c.exporterTroubleSeverity },
          annotations: annotations(
            'MimecastAuthFailing',
            'Mimecast refuses the credentials of account {{ $labels.account }} ({{ $labels.reason }}).',
            'Mimecast refused the credentials of account {{ $labels.account }}: polls failed with reason {{ $labels.reason }} ({{ $value | humanize }} in the last 15 minutes). The account is not monitored until this is fixed, and retrying will not help. Check the credentials: for API 2.0 the client ID and secret and the application\'s role (Monitoring | Processing | Read); for API 1.0 the application ID and key, access key and secret key. For binding_expired, renew the API 1.0 access key binding: create new access and secret keys for the API user and update the configuration.',
          ),
        },
      ],
    }],
  },

  // Alertmanager inhibit_rules: the cause silences its consequences.
  alertmanagerInhibitRules+:: [
    {
      // An account whose polls fail: its stale data follows from that.
      source_matchers: ['alertname="MimecastAccountDown"'],
      target_matchers: ['alertname="MimecastDataStale"'],
      equal: ['account'],
    },
    {
      // Refused credentials: the account is down and its data stale because of it.
      source_matchers: ['alertname="MimecastAuthFailing"'],
      target_matchers: ['alertname=~"MimecastAccountDown|MimecastDataStale"'],
      equal: ['account'],
    },
    {
      // Rate limited: the data goes stale because of it.
      source_matchers: ['alertname="MimecastRateLimited"'],
      target_matchers: ['alertname="MimecastDataStale"'],
      equal: ['account'],
    },
  ],
}
