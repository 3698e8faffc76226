"""Wires the pieces together: config -> poller -> store -> collector -> HTTP."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mimecast_exporter import __version__
from mimecast_exporter.clock import Clock
from mimecast_exporter.collector import MimecastCollector
from mimecast_exporter.config import Config
from mimecast_exporter.config.model import Thresholds
from mimecast_exporter.poller import Poller
from mimecast_exporter.store import SnapshotStore
from mimecast_exporter.web.server import MAX_CONNECTIONS, AccountStatus, QueueStatus, WebServer
from mimecast_exporter.web.watch import WebConfigWatcher


class StoreStatus:
    """What the landing page and /-/ready show, read from the store."""

    def __init__(
        self, store: SnapshotStore, config: Config, clock: Clock, reloads: ReloadStatus
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.reloads = reloads

    @property
    def thresholds(self) -> Thresholds:
        """When the page says mail is stuck: the alerts' thresholds."""
        return self.config.thresholds

    @property
    def reload_failed_at(self) -> float | None:
        """When the latest SIGHUP's configuration was refused, while it is the latest."""
        return None if self.reloads.successful else self.reloads.failed_at

    def is_ready(self) -> bool:
        return self.store.view().first_cycle_done

    def account_statuses(self) -> Sequence[AccountStatus]:
        view = self.store.view()
        now = self.clock.monotonic()
        details = {a.name: a.expose_message_details for a in self.config.accounts}
        statuses = []
        for account in view.accounts:
            queues = []
            for queue in view.queue_types:
                state = view.queues[(account, queue)]
                snapshot = state.fresh_snapshot(now, self.config.poll.stale_after)
                queues.append(
                    QueueStatus(
                        queue=queue,
                        last_success=state.last_success,
                        last_error=state.last_error,
                        messages=snapshot.messages if snapshot is not None else None,
                        failure=state.last_failure,
                        snapshot=snapshot,
                    )
                )
            statuses.append(
                AccountStatus(
                    account,
                    view.account_up(account),
                    tuple(queues),
                    rate_limit_remaining=view.api[account].rate_limit_remaining,
                    details=details.get(account, False),
                )
            )
        return statuses


class ReloadStatus(Collector):
    """mimecast_exporter_config_last_reload_successful and its timestamp, as
    Prometheus's own prometheus_config_last_reload_* series."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.successful = True
        self.success_time = clock.time()  # the configuration loaded at start counts
        self.failed_at: float | None = None

    def succeeded(self) -> None:
        self.successful, self.success_time = True, self.clock.time()

    def failed(self) -> None:
        self.successful, self.failed_at = False, self.clock.time()

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "mimecast_exporter_config_last_reload_successful",
            "1 when the latest configuration (re)load succeeded; 0 when the latest"
            " SIGHUP found a configuration that was refused, and the previous one runs on.",
            value=1 if self.successful else 0,
        )
        yield GaugeMetricFamily(
            "mimecast_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration in force was loaded (Unix seconds).",
            value=self.success_time,
        )


class Exporter:
    def __init__(self, config: Config, clock: Clock, *, process_metrics: bool = True) -> None:
        self.config = config
        self.clock = clock
        self.reloads = ReloadStatus(clock)
        self.store = SnapshotStore(
            (a.name for a in config.accounts), config.poll.queues, clock.monotonic
        )
        self.poller = Poller(config, self.store, clock)
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = MimecastCollector(
            self.store, config.poll.stale_after, clock.time, clock.monotonic, config.metrics
        )
        self.registry.register(self.collector)
        self.registry.register(self.reloads)
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.status = StoreStatus(self.store, config, clock, self.reloads)
        self.web: WebServer | None = None

    def serve(
        self,
        listen_address: str,
        telemetry_path: str = "/metrics",
        web_config: WebConfigWatcher | None = None,
        max_connections: int = MAX_CONNECTIONS,
        dashboard_url: str | None = None,
    ) -> WebServer:
        """Bind the HTTP server (raises OSError if the address is taken) and start polling.

        ``web_config`` (``--web.config.file``) adds TLS and basic auth.
        """
        self.web = WebServer(
            listen_address,
            self.registry,
            self.status,
            telemetry_path,
            version=__version__,
            web_config=web_config,
            max_connections=max_connections,
            dashboard_url=dashboard_url,
        )
        self.web.start()
        self.poller.start()
        return self.web

    def all_up(self) -> bool:
        view = self.store.view()
        return all(view.account_up(account) for account in view.accounts)

    def reload(self, config: Config) -> None:
        """Run ``config`` from now on, without a restart and without losing the
        series of the (account, queue) pairs it still has.

        The poller is reconfigured in place (see :meth:`Poller.reconfigure`):
        unchanged accounts keep their tokens and turns; a changed one is
        polled again at once, and what its polls under way find is dropped.
        """
        self.store.reconfigure((a.name for a in config.accounts), config.poll.queues)
        self.poller.reconfigure(config)
        self.collector.stale_after = config.poll.stale_after
        self.collector.metrics = config.metrics
        self.status.config = config
        self.config = config
        self.reloads.succeeded()

    def reload_unchanged(self) -> None:
        """A reload that found the configuration in force: it succeeded."""
        self.reloads.succeeded()

    def reload_failed(self) -> None:
        self.reloads.failed()

    def stop(self) -> None:
        self.poller.stop()
        if self.web is not None:
            self.web.shutdown()
