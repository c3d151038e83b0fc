"""Multi-agent domain: offline preference-based MARL on MPE (PettingZoo, mpe2) with MARLHF's dataset kinds."""

from domains.multiagent.domain import MultiAgentConfig, MultiAgentDomain

__all__ = ["MultiAgentConfig", "MultiAgentDomain"]
