"""A LangChain conversation thread, offline: the thread_id in the run config is the session.

A prompt | ChatOpenAI chain against the fake OpenAI server beside this file, called three times
with ``config={"metadata": {"thread_id": ...}}`` as LangChain apps name a conversation. With
``sessiontrace.integrations.langchain.instrument()`` every span of each run, the OpenAI
client's included, is stamped with that thread as its session:

    python examples/langchain_thread.py
    sessiontrace show latest

Needs: pip install langchain-core langchain-openai openinference-instrumentation-openai
"""

from __future__ import annotations

import argparse
import uuid

from fake_openai_server import FakeOpenAI
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

import sessiontrace
from sessiontrace.integrations import langchain as langchain_sessions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session-id", default=f"thread-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--store", default=None, help="SQLite file (default ./.sessiontrace/)")
    arguments = parser.parse_args()

    provider = sessiontrace.configure(service_name="langchain-thread", store_path=arguments.store)
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument()
    langchain_sessions.instrument()

    with FakeOpenAI() as llm_server:
        model = ChatOpenAI(model="fake-gpt-mini", base_url=llm_server.base_url, api_key="offline")
        prompt = ChatPromptTemplate.from_messages(
            [("system", "You are a travel agent."), ("user", "{question}")]
        )
        chain = prompt | model | StrOutputParser()
        config = {"metadata": {"thread_id": arguments.session_id}}
        for question in ("Hello!", "Where should I go in May?", "Thanks!"):
            print(f"user> {question}\nbot>  {chain.invoke({'question': question}, config=config)}")
    provider.shutdown()
    print(f"\nthread {arguments.session_id}: 3 runs recorded. Now run: sessiontrace show latest")


if __name__ == "__main__":
    main()
