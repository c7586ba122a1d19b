"""A Streamlit chat app: every rerun of the script belongs to the visitor's one session.

Streamlit reruns the whole script on each interaction, so there is no block around the
conversation: the session id lives in ``st.session_state`` and ``set_session`` puts it in
force at the top of each rerun (the handle restores it at the end). Offline, against the fake
LLM beside this file:

    pip install streamlit
    streamlit run examples/streamlit_chat.py
    sessiontrace sessions
"""

from __future__ import annotations

import uuid

import fake_llm
import streamlit as st

import sessiontrace

REPLIES = {
    "may": "Oslo is lovely in May: long days and cool air.",
    "hello": "Hi! Where would you like to go?",
}


@st.cache_resource
def tracing() -> object:
    """Configure once per server process, not once per rerun."""
    return sessiontrace.configure(service_name="streamlit-chat")


tracing()
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
        answer = fake_llm.chat_completion("fake-gpt-mini", st.session_state.history, REPLIES)
        st.session_state.history.append({"role": "assistant", "content": answer})
        st.chat_message("assistant").write(answer)
    st.caption(f"session {st.session_state.session_id}")
finally:
    handle.restore()
