"""The client side of Cursor's protocol: headers, request/response mapping, errors, the Connect client."""
