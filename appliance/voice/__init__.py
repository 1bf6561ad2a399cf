"""The local voice agent: VAD → streaming STT → LLM → streaming TTS on 20 ms call audio."""
