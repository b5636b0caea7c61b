"""What a signed-in user does in the web interface: read, compose and send, over the mail store and the MTA."""
