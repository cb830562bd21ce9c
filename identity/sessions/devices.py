"""Browsers and systems, named from their User-Agent header for people to recognise."""

from __future__ import annotations

from ua_parser import parse as parse_user_agent


def describe(user_agent: str | None) -> tuple[str, str]:
    """("Firefox 132", "Windows") from a User-Agent header, in words a person knows."""
    if not user_agent:
        return "Unknown browser", "unknown system"
    parsed = parse_user_agent(user_agent)
    browser = parsed.user_agent.family if parsed.user_agent else "Unknown browser"
    if parsed.user_agent and parsed.user_agent.major:
        browser += f" {parsed.user_agent.major}"
    system = parsed.os.family if parsed.os else "unknown system"
    if parsed.device and parsed.device.family not in ("Other", "Generic Smartphone"):
        system = f"{system}, {parsed.device.family}"
    return browser, system
