"""SmarterMail's ASMX web services, driven by the WSDL documents in the top-level wsdl/ folder."""
