"""A FastAPI chat service whose requests carry the conversation's session, offline.

It starts the fake OpenAI server beside this file and the service on 127.0.0.1, sends three
turns of one conversation with an ``X-Session-Id`` header (as a browser client or another
service would), and stops. Every span (the server's, the OpenAI client's) lands in the local
store under that session:

    python examples/fastapi_chat.py
    sessiontrace show latest

Needs: pip install fastapi uvicorn openai openinference-instrumentation-openai
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import httpx
import openai
import uvicorn
from fake_openai_server import FakeOpenAI
from fastapi import FastAPI
from pydantic import BaseModel

import sessiontrace
from sessiontrace.integrations.asgi import SessionMiddleware


class Turn(BaseModel):
    message: str


def make_app(llm_base_url: str) -> SessionMiddleware:
    api = FastAPI()
    llm = openai.AsyncOpenAI(base_url=llm_base_url, api_key="offline")

    @api.post("/chat")
    async def chat(turn: Turn) -> dict[str, str]:
        reply = await llm.chat.completions.create(
            model="fake-gpt-mini", messages=[{"role": "user", "content": turn.message}]
        )
        return {"reply": reply.choices[0].message.content or ""}

    return SessionMiddleware(api)  # the session comes from each request's headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session-id", default=f"web-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--store", default=None, help="SQLite file (default ./.sessiontrace/)")
    arguments = parser.parse_args()

    provider = sessiontrace.configure(service_name="fastapi-chat", store_path=arguments.store)
    try:
        from openinference.instrumentation.openai import OpenAIInstrumentor
    except ImportError:
        print("(openinference-instrumentation-openai is not installed: no LLM spans)")
    else:
        OpenAIInstrumentor().instrument()

    with FakeOpenAI() as llm_server:
        server = uvicorn.Server(
            uvicorn.Config(make_app(llm_server.base_url), port=0, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        headers = {"X-Session-Id": arguments.session_id, "X-User-Id": "ada@example.com"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            for message in ("Hello!", "Where should I go in May?", "Thanks!"):
                answer = client.post("/chat", json={"message": message})
                print(f"user> {message}\nbot>  {answer.json()['reply']}")
                print(f"      (X-Session-Id: {answer.headers['x-session-id']})")
        server.should_exit = True
        thread.join(timeout=10)
    provider.shutdown()
    print(f"\nsession {arguments.session_id}: 3 turns recorded. Now run: sessiontrace show latest")


if __name__ == "__main__":
    main()
