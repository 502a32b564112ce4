"""Update rules (:mod:`.rules`: ``UPDATE_RULES``, the classic ``sgd``/``adam``/..., and
:mod:`.orthogonal`: Muon for weight matrices) and parameter groups (:mod:`.param_groups`), offered
under the classic ``nndl.optim`` names.
"""

from .orthogonal import muon, newton_schulz
from .param_groups import PARAM_GROUP_KEYS, resolve_param_groups
from .rules import (
    RULE_DEFAULTS,
    RULE_STATE,
    UPDATE_RULES,
    adam,
    adamw,
    get_update_rule,
    nesterov_momentum,
    rmsprop,
    sgd,
    sgd_momentum,
    sgdw,
    state_shapes,
)

__all__ = [
    "PARAM_GROUP_KEYS",
    "RULE_DEFAULTS",
    "RULE_STATE",
    "state_shapes",
    "UPDATE_RULES",
    "adam",
    "adamw",
    "get_update_rule",
    "muon",
    "newton_schulz",
    "nesterov_momentum",
    "resolve_param_groups",
    "rmsprop",
    "sgd",
    "sgd_momentum",
    "sgdw",
]
