"""A Streamlit chat app: every rerun of the script belongs to the visitor's one session.

Streamlit reruns the whole script on each interaction, so there is no block around the
conversation: the session id lives in ``st.session_state`` and ``set_session`` puts it in
force at the top of each rerun (the handle restores it at the end). Offline: the real
``openai`` client against the fake OpenAI server beside this file:

    pip install streamlit openai openinference-instrumentation-openai
    streamlit run examples/streamlit_chat.py
    sessiontrace sessions
"""

from __future__ import annotations

import uuid

import openai
import streamlit as st
from fake_openai_server import FakeOpenAI

import sessiontrace


@st.cache_resource
def llm() -> openai.OpenAI:
    """Set up once per server process, not once per rerun: tracing, the fake server, a client."""
    sessiontrace.configure(service_name="streamlit-chat")
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument()
    server = FakeOpenAI().__enter__()  # lives as long as the Streamlit server
    return openai.OpenAI(base_url=server.base_url, api_key="offline")


client = llm()
if "session_id" not in st.session_state:
    st.session_state.session_id = f"st-{uuid.uuid4().hex[:8]}"
    st.session_state.history = []

handle = sessiontrace.set_session(st.session_state.session_id, user_id="visitor")
try:
    st.title("Trip chat")
    for message in st.session_state.history:
        st.chat_message(message["role"]).write(message["content"])
    question = st.chat_input("Ask about a trip")
    if question:
        st.chat_message("user").write(question)
        st.session_state.history.append({"role": "user", "content": question})
        reply = client.chat.completions.create(
            model="fake-gpt-mini", messages=st.session_state.history
        )
        answer = reply.choices[0].message.content or ""
        st.session_state.history.append({"role": "assistant", "content": answer})
        st.chat_message("assistant").write(answer)
    st.caption(f"session {st.session_state.session_id}")
finally:
    handle.restore()
