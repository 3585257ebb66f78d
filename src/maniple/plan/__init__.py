"""Planners: pure functions from cost tables to frozen plans, no device needed."""

from maniple.plan.batch import PLANNERS, plan_batch
from maniple.plan.batch_plan import BatchPlan

__all__ = ["PLANNERS", "BatchPlan", "plan_batch"]
