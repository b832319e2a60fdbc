"""MCP tools: one module per tool, each thin (validate, call the domain, shape the result)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from agent_memory.runtime import Runtime
from agent_memory.tools import forget, handoff_packet, recall, remember, supersede_decision


def register_all(server: MCPServer, runtime: Runtime) -> None:
    """Add every tool to ``server``."""
    for module in (remember, recall, supersede_decision, handoff_packet, forget):
        module.register(server, runtime)
