"""Model service bootstrap: `create_server(settings, holder)` for tests and `main()`.

The server listens at once and reports NOT_SERVING; the model version (the newest in
MODEL_DIR, or MODEL_VERSION) is loaded and warmed in the background, then health turns
SERVING. Until then RPCs answer UNAVAILABLE. Unless a version is pinned, newer versions
appearing in MODEL_DIR are then loaded and swapped in (`reload.ModelWatcher`)."""

from __future__ import annotations

import logging
import sys

from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.errors import RecsysError
from recsys.logs import quiet_tensorflow
from recsys.serving import metrics
from recsys.serving.config import Settings
from recsys.serving.server import Service, run_service
from services.model.batching import Batcher
from services.model.predictor import Predictor, PredictorHolder
from services.model.reload import ModelWatcher, in_daemon_thread
from services.model.servicer import ModelServicer

log = logging.getLogger(__name__)

SERVICE_NAME = model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name


async def create_server(settings: Settings, holder: PredictorHolder) -> Service:
    """A Service for `holder` bound to settings.model_port; healthy once it holds a model.
    Predict calls are batched as MODEL_BATCH_SIZE / _WAIT_US / MODEL_QUEUE_LIMIT say."""
    service = Service(settings, [SERVICE_NAME])
    batcher = Batcher(
        settings.model_batch_size, settings.model_batch_wait_us, settings.model_queue_limit
    )
    model_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(holder, batcher), service.server
    )
    service.bind(settings.model_port)
    service.on_stop(batcher.close)

    async def ready() -> bool:
        return holder.predictor is not None

    service.watch_readiness(ready, every_s=0.2)
    return service


async def serve(settings: Settings) -> None:
    holder = PredictorHolder()
    service = await create_server(settings, holder)
    await service.start()
    log.info("model service listening", extra={"port": service.port})
    try:
        predictor = await in_daemon_thread(
            Predictor.load, settings.model_dir, settings.model_version
        )
    except RecsysError as exc:
        log.error("cannot load a model: %s", exc)
        await service.stop(0)
        raise
    holder.swap(predictor)
    show_version(predictor, None)
    if settings.model_poll_s and not settings.model_version:
        watcher = ModelWatcher(holder, settings.model_dir, settings.model_poll_s, show_version)
        service.run_in_background(watcher.run())
    await service.serve_until_signal()


def show_version(new: Predictor, old: Predictor | None) -> None:
    """The recsys_model_version_info gauge names the version served."""
    if old is not None:
        metrics.MODEL_VERSION.remove(old.version)
    metrics.MODEL_VERSION.labels(new.version).set(1)


def main() -> int:
    quiet_tensorflow()
    return run_service("model", serve)


if __name__ == "__main__":
    sys.exit(main())
