"""The parts of live transcription, one job each; core.streaming's LiveTranscriber composes them.

- intake.py: `Intake` keeps every chunk received (16 kHz mono), up to the session cap.
- energy.py: `EnergyGate` tells speech frames from noise and finds the pauses that end an utterance.
- agreement.py: `Agreement` holds the words and commits what two hypotheses agree on (LocalAgreement-2).
- buffer.py: `RollingBuffer` is the audio the next update decodes, and says where it may be trimmed.
- pace.py: `Pace` says when an update is due, stamps arrivals and says whether the machine keeps up.
- decoder.py: `LiveDecoder` calls the engine with the live options and counts decodes and compute time.

Why apart: each rule can be read (and changed) without the others, and the transcriber that joins
them reads as the algorithm itself. ufal/whisper_streaming splits the same way: its HypothesisBuffer
(the agreement rule) lives apart from OnlineASRProcessor (the audio buffer and its trimming).
None of these modules imports core.streaming, so the public module imports them without a circle.
"""
