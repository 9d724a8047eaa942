"""OpenLineage events for index runs (file transport by default: one JSON event per line)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.output_statistics_output_dataset import OutputStatisticsOutputDatasetFacet
from openlineage.client.generated.parent_run import Job as ParentJob
from openlineage.client.generated.parent_run import ParentRunFacet
from openlineage.client.generated.parent_run import Run as ParentRun
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.uuid import generate_new_uuid

NAMESPACE = "meshrag"
PRODUCER = "https://github.com/meshrag/meshrag"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset in an event: product sources (input) or a chunk / embedding version (output)."""

    namespace: str  # meshrag://products | meshrag://chunks | meshrag://embeddings
    name: str
    version: str
    rows: int | None = None


class LineageEmitter:
    """Emits RunEvents for one index run and its per-product steps."""

    def __init__(self, events_file: Path):
        self.events_file = Path(events_file)
        self.events_file.parent.mkdir(parents=True, exist_ok=True)
        transport = FileTransport(FileConfig(log_file_path=str(self.events_file), append=True))
        self.client = OpenLineageClient(transport=transport)

    @staticmethod
    def new_run_id() -> str:
        return str(generate_new_uuid())

    def emit(self, state: RunState, job: str, run_id: str, *, inputs: Sequence[DatasetRef] = (),
             outputs: Sequence[DatasetRef] = (), parent: tuple[str, str] | None = None,
             error: str | None = None) -> None:
        run_facets: dict = {}
        if parent is not None:
            run_facets["parent"] = ParentRunFacet(run=ParentRun(runId=parent[1]),
                                                  job=ParentJob(namespace=NAMESPACE, name=parent[0]))
        if error:
            run_facets["errorMessage"] = ErrorMessageRunFacet(message=error, programmingLanguage="python")
        event = RunEvent(
            eventType=state,
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=run_id, facets=run_facets),
            job=Job(namespace=NAMESPACE, name=job),
            producer=PRODUCER,
            inputs=[InputDataset(namespace=d.namespace, name=d.name,
                                 facets={"version": DatasetVersionDatasetFacet(datasetVersion=d.version)})
                    for d in inputs],
            outputs=[OutputDataset(namespace=d.namespace, name=d.name,
                                   facets={"version": DatasetVersionDatasetFacet(datasetVersion=d.version)},
                                   outputFacets={"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=d.rows)}
                                   if d.rows is not None else {})
                     for d in outputs],
        )
        self.client.emit(event)
