"""Robot domain: offline preference-based RL on Meta-World with D4RL-layout datasets."""

from domains.robot.domain import RobotConfig, RobotDomain

__all__ = ["RobotConfig", "RobotDomain"]
