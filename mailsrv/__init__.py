"""mailsrv: a mail server administered over SmarterMail's SOAP/ASMX automation contract."""

__version__ = "0.1.0"
