"""E-forms as data (全程网办): a form is a list of typed fields with Chinese labels.

``schema`` checks a form definition staff save and merges the forms of a bundle (一表申请:
each shared field asked once); ``validation`` checks what a resident filled in, field by field,
with Chinese messages; ``prefill`` fills what the service already knows (the verified
identity, the enterprise, the door plate).
"""
