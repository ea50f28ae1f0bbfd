"""The population: p children of one parent, trained and scored together.

A generation of gradient lexicase selection starts every child from the parent, trains each
child with SGD on its own minibatches (mutation by subset gradient descent), scores all children
on the selection cases, and copies the winner into every child (`Population.adopt`). Plain SGD
is the same object with ``p = 1``.

One interface, two paths that hold the same state and give the same results up to float
rounding:

* ``glx.population.base``: what a path is (`PopulationPath`: train a step, evaluate) and every
  state operation both share, written once: the foreach SGD update, adoption and the momentum
  policies, state dicts, one child's state in and out, a child as a plain module;
* ``glx.population.batched``: the children's state stacked (p, ...), one vmapped
  `functional_call` for all of them; on CUDA the step can be one captured CUDA graph;
* ``glx.population.looped``: p ordinary modules in a Python loop;
* ``glx.population.choose``: which path (``"auto"``, ``"measure"``, the fallback to the loop
  when the model fails under vmap), and why (`Population.path_reason`);
* ``glx.population.core``: `Population`, the object users hold, which checks its arguments and
  hands the work to its path.
"""

from glx.population.base import MOMENTUM_POLICIES, PATHS
from glx.population.core import Population
from glx.population.memory import keep_freed_memory

__all__ = ["Population", "PATHS", "MOMENTUM_POLICIES", "keep_freed_memory"]
