"""Conversation history: SQLite in the home directory (`history.sqlite3`), with numbered migrations.

`History(None)` keeps everything in memory, for `medassist chat --no-history`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from index.manifest import connect, migrate, transaction

MIGRATIONS = [
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        answer_json TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id)
    """,
]
TITLE_CHARS = 60  # a new conversation is named after the start of its first question


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created_at: str
    updated_at: str
    n_messages: int


@dataclass(frozen=True)
class Message:
    role: str  # user | assistant
    content: str  # the question, or the answer's Markdown
    answer: dict | None  # the whole Answer (as in `ask --json`) for assistant messages
    created_at: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class History:
    def __init__(self, path: Path | None):
        self.path = path
        self.db = connect(str(path) if path else ":memory:")  # the chat and `ask` may write it at once
        migrate(self.db, MIGRATIONS)

    def start(self, first_question: str) -> int:
        title = " ".join(first_question.split())
        title = title if len(title) <= TITLE_CHARS else title[:TITLE_CHARS - 1].rstrip() + "…"
        with transaction(self.db) as db:
            now = _now()
            return db.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                              (title or "New chat", now, now)).lastrowid

    def add(self, conversation_id: int, role: str, content: str, answer: dict | None = None) -> None:
        with transaction(self.db) as db:
            now = _now()
            db.execute("INSERT INTO messages (conversation_id, role, content, answer_json, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (conversation_id, role, content,
                                                  json.dumps(answer, ensure_ascii=False) if answer else None, now))
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))

    def conversations(self) -> list[Conversation]:
        """Most recently active first."""
        rows = self.db.execute(
            "SELECT c.id, c.title, c.created_at, c.updated_at, count(m.id) FROM conversations c "
            "LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id ORDER BY c.updated_at DESC, c.id DESC")
        return [Conversation(*row) for row in rows]

    def conversation(self, conversation_id: int) -> Conversation | None:
        return next((c for c in self.conversations() if c.id == conversation_id), None)

    def messages(self, conversation_id: int) -> list[Message]:
        rows = self.db.execute("SELECT role, content, answer_json, created_at FROM messages "
                               "WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [Message(role, content, json.loads(answer) if answer else None, created)
                for role, content, answer, created in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        if not title.strip():
            raise ValueError("a conversation title cannot be empty")
        with transaction(self.db) as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title.strip(), conversation_id))

    def delete(self, conversation_id: int) -> None:
        with transaction(self.db) as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation as a Markdown document: questions, answers, and each answer's numbered sources."""
        conversation = self.conversation(conversation_id)
        if conversation is None:
            raise ValueError(f"no conversation {conversation_id}")
        parts = [f"# {conversation.title}", f"*Exported from medassist on {_now()[:10]}.*"]
        for message in self.messages(conversation_id):
            if message.role == "user":
                parts.append(f"## Question\n\n{message.content}")
                continue
            answer = message.answer or {}
            notice = (answer.get("safety") or {}).get("emergency_notice")
            parts.append("## Answer\n\n" + (f"> **{notice}**\n\n" if notice else "") + message.content)
            citations = answer.get("citations") or []
            if citations:
                parts.append("**Sources**\n\n" + "\n".join(
                    f"{c['n']}. {c['title']}" + (f" — {c['section']}" if c.get("section") else "")
                    + (f", page {c['page']}" if c.get("page") else "") + f" ({c['source']})" for c in citations))
            disclaimer = (answer.get("safety") or {}).get("disclaimer")
            if disclaimer:
                parts.append(f"*{disclaimer}*")
        return "\n\n".join(parts) + "\n"

    def close(self) -> None:
        self.db.close()
