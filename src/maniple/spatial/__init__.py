"""The spatial wing (Legion, ICCD 2021): every conv layer's rows split across devices.

Stages, in import order: costs (`costs`: Legion's S/E/R/A tables and predictor), planners
(`flc`, `plan_checks`, `plan`, `planners`: pure functions, tables in, frozen plan out),
schedule (`schedule`: the plan lowered into explicit receive / run / send steps), profiler
(`profiler`, `cache`: measuring the tables, keeping them in the profile store), runtimes
(`runtimes/`: each one file that executes a schedule), session (`session`, `setup`: one
network on one set of devices, end to end), report (`bench`, `figures`).
"""

from maniple.spatial.cache import CostCache, ProfileKey
from maniple.spatial.costs import LegionCosts, ProfilingSpent, predict_all, predict_group
from maniple.spatial.flc import FLC, best_flc, choose_faster, fss, wildcard_candidate
from maniple.spatial.plan import SEARCHES, SpatialPlan
from maniple.spatial.planners import (
    plan_for_flc,
    plan_from_measured,
    plan_single,
    plan_spatial,
    wildcard_plans,
)
from maniple.spatial.profiler import SpeedProbe, measure_groups, measure_speeds, profile_units
from maniple.spatial.runtimes.star import SpatialRun, run_schedule, run_spatial_plan
from maniple.spatial.schedule import Schedule, Step, lower
from maniple.spatial.session import LegionSession, SpatialResult, check_plan_fits
from maniple.spatial.setup import SpatialSetup, open_cache, open_devices, prepare, warm_up

__all__ = [
    "FLC",
    "SEARCHES",
    "CostCache",
    "LegionCosts",
    "LegionSession",
    "ProfileKey",
    "ProfilingSpent",
    "Schedule",
    "SpatialPlan",
    "SpatialResult",
    "SpatialRun",
    "SpatialSetup",
    "SpeedProbe",
    "Step",
    "best_flc",
    "check_plan_fits",
    "choose_faster",
    "fss",
    "lower",
    "measure_groups",
    "measure_speeds",
    "open_cache",
    "open_devices",
    "plan_for_flc",
    "plan_from_measured",
    "plan_single",
    "plan_spatial",
    "predict_all",
    "predict_group",
    "prepare",
    "profile_units",
    "run_schedule",
    "run_spatial_plan",
    "warm_up",
    "wildcard_candidate",
    "wildcard_plans",
]
