"""Pilothouse's default scheduler plugins (entry-point group ``pilothouse.scheduler``):
kube-scheduler's default profile, one class per plugin. See README.md for each plugin's
extension points, options and defaults."""

from pilothouse_sched_default.binder import DefaultBinder
from pilothouse_sched_default.imagelocality import ImageLocality
from pilothouse_sched_default.interpodaffinity import InterPodAffinity
from pilothouse_sched_default.nodeaffinity import NodeAffinity
from pilothouse_sched_default.nodebasics import NodeName, NodeUnschedulable
from pilothouse_sched_default.noderesources import NodeResourcesFit
from pilothouse_sched_default.podtopologyspread import PodTopologySpread
from pilothouse_sched_default.preemption import DefaultPreemption
from pilothouse_sched_default.queuesort import PrioritySort
from pilothouse_sched_default.tainttoleration import TaintToleration

__all__ = ["DefaultBinder", "DefaultPreemption", "ImageLocality", "InterPodAffinity",
           "NodeAffinity", "NodeName", "NodeResourcesFit", "NodeUnschedulable",
           "PodTopologySpread", "PrioritySort", "TaintToleration"]
