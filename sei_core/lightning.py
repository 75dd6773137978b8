"""A PyTorch Lightning callback that records SEI in a Lightning training run.

Lightning is not a dependency of sei-review: import this module only where it is installed
(``lightning`` 2.x, or the older ``pytorch_lightning``). The callback feeds a
:class:`~sei_core.run_writer.RunWriter`: your ``training_step`` trains on
``writer.targets`` (the given labels, with the auxiliary samples moved to class K) and
returns the batch's logits, targets and sample ids; the callback records them, writes
every epoch, and scores the run when fitting ends::

    writer = RunWriter("runs/mine", ids, labels, classes, data="labels.csv")

    class Model(L.LightningModule):
        def training_step(self, batch, batch_idx):
            x, idx = batch                                   # idx: positions in ids
            y = self.targets[idx]                            # torch.as_tensor(writer.targets)
            logits = self.net(x)                             # writer.n_outputs outputs
            loss = F.cross_entropy(logits, y)
            return {"loss": loss, "logits": logits, "targets": y, "sample_ids": idx}

    L.Trainer(max_epochs=20, callbacks=[SEICallback(writer)]).fit(Model(), loader)

Single process only: with several devices each rank sees its own shard, and the records
must be gathered first (``sei train`` does this for its own runs).
"""

from __future__ import annotations

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError as e:
        raise ImportError("sei_core.lightning needs PyTorch Lightning (`pip install lightning`); "
                          "without it, use sei_core.run_writer.RunWriter in your own loop") from e

from .run_writer import RunWriter


class SEICallback(Callback):
    """Records each training batch's ``logits``, ``targets`` and ``sample_ids`` (from the dict
    that ``training_step`` returns) into ``writer``; one record per training epoch; scores
    the run (``scores.csv``) at the end of ``fit``."""

    def __init__(self, writer: RunWriter):
        super().__init__()
        self.writer = writer

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        missing = [k for k in ("logits", "targets", "sample_ids") if not isinstance(outputs, dict) or k not in outputs]
        if missing:
            raise ValueError(f"SEICallback: training_step must return a dict with {missing} besides the loss")
        self.writer.update(outputs["logits"], outputs["targets"], outputs["sample_ids"])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        loss = metrics.get("train_loss", metrics.get("loss"))
        self.writer.end_epoch(loss=None if loss is None else float(loss))

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.writer.epoch:
            self.writer.finish()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.writer.fail(f"{type(exception).__name__}: {exception}")
