"""The per-generation record: what one generation of a GLS (or SGD) run leaves behind.

One definition, shared by the trainer that writes records (``glx.gls``), the figures that draw
them (``glx.viz``) and the panels that summarise them (``glx.widgets``). A run's history is a
list of these, one per generation, in order; it is saved as JSON and in checkpoints, so every
value is a plain type (int, float, bool, str, None, lists of them). Imports nothing from glx.
"""

from __future__ import annotations

from typing import TypedDict


class GenerationRecord(TypedDict):
    """One generation. For ``method="sgd"`` a generation is one epoch of one model (``pop = 1``,
    no selection: ``winner = 0``, ``cases_used = 0``)."""

    generation: int                 # 0-based index
    epoch: float                    # epochs of gradient work so far (all children together)
    lineage_epoch: float            # epochs of data the surviving lineage trained on so far
    steps: int                      # optimizer steps each child took in this generation
    lr: float                       # learning rate of the generation's first step
    lr_end: float                   # learning rate of its last step
    child_loss: list[float]         # mean training loss of each child over its steps
    child_acc: list[float]          # training accuracy of each child on its own part
    train_loss: float               # child_loss of the winner
    train_acc: float                # child_acc of the winner
    winner: int                     # the child that became the next parent
    cases_used: int                 # cases selection consumed before one child was left
    cases_scored: int               # cases the children were scored on (>= cases_used)
    deciding_child: int | None      # the child that trained on the deciding case (None: none did,
                                    # the selection fell back to a random draw, or holdout cases)
    winner_trained_on_deciding: bool | None  # deciding_child == winner (None as above)
    fallback: bool                  # the cases ran out before one child was left: a random draw
    test_acc: float | None          # the parent's test accuracy (None when not evaluated)
    mutation_s: float               # seconds: training the children
    selection_s: float              # seconds: scoring, selecting and adopting the winner
    eval_s: float                   # seconds: test evaluation
    wall_s: float                   # seconds since the run began (training time only)


# Fields that measure time: two runs with the same config and seed differ only in these.
TIMING_KEYS = ("mutation_s", "selection_s", "eval_s", "wall_s")
