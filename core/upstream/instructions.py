"""Instructions the gateway adds to the system context where Cursor has no native switch.

Cursor's native tool path (MCP tools) has no tool_choice or parallel_tool_calls; these sentences
ask the model for the behaviour and the gateway enforces what it can on the answer (a named
tool is the only one declared; with parallel calls off, only the first call is passed on).
"""

from __future__ import annotations

NO_TOOLS = "Do not call any tool in this turn; answer in text."
REQUIRE_TOOL = "You must call at least one of the available tools in this turn."
ONE_TOOL = "Call at most one tool in this turn."
FORCE_TOOL = "You must call the tool `{name}` in this turn."
FORCE_TOOL_PATTERN = r"You must call the tool `([A-Za-z0-9_-]+)` in this turn\."
# Added for the one retry when a turn that must call a tool got text (core/api/chat_service.py).
TOOL_RETRY = (
    "Your previous answer did not call a tool, but this turn requires a tool call. Call the tool now."
)
