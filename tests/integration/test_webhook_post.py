#!/usr/bin/env python3
"""Helper for the webhook integration tests (not a test itself): POSTs a Twilio-style
form to URL, signed like Twilio does (base64 HMAC-SHA1 over the URL and the sorted
name+value pairs) unless told otherwise, and prints "STATUS<TAB>BODY" (with --with-type,
"STATUS<TAB>CONTENT-TYPE<TAB>BODY", the Content-Type "-" when there is none).

usage: test_webhook_post.py URL TOKEN [--sign-url U] [--sig S|--no-sig] [--raw BODY|--raw-file F] [--with-type]
                            name=value ...
"""
import base64, hashlib, hmac, sys, urllib.parse, http.client

def main():
    a = sys.argv[1:]
    url, token = a[0], a[1]
    sign_url, sig, raw, nosig, pairs, with_type = url, None, None, False, [], False
    i = 2
    while i < len(a):
        if a[i] == '--sign-url': sign_url = a[i + 1]; i += 2
        elif a[i] == '--sig': sig = a[i + 1]; i += 2
        elif a[i] == '--no-sig': nosig = True; i += 1
        elif a[i] == '--with-type': with_type = True; i += 1
        elif a[i] == '--raw': raw = a[i + 1]; i += 2
        elif a[i] == '--raw-file': raw = open(a[i + 1], 'rb').read(); i += 2
        else:
            n, _, v = a[i].partition('='); pairs.append((n, v)); i += 1
    enc = lambda x: urllib.parse.quote_plus(x.encode('utf-8', 'surrogateescape'), safe='')
    body = raw if raw is not None else '&'.join(enc(n) + '=' + enc(v) for n, v in pairs)
    if sig is None and not nosig:
        data = sign_url + ''.join(n + v for n, v in sorted(pairs, key=lambda p: (p[0].encode('utf-8', 'surrogateescape'), p[1].encode('utf-8', 'surrogateescape'))))
        sig = base64.b64encode(hmac.new(token.encode(), data.encode('utf-8', 'surrogateescape'), hashlib.sha1).digest()).decode()
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    h = {'Content-Type': 'application/x-www-form-urlencoded'}
    if sig is not None and not nosig: h['X-Twilio-Signature'] = sig
    path = u.path + ('?' + u.query if u.query else '')
    c.request('POST', path, body=body.encode('utf-8', 'surrogateescape') if isinstance(body, str) else body, headers=h)
    r = c.getresponse()
    body = r.read().decode('utf-8', 'replace')
    if with_type:
        print('%d\t%s\t%s' % (r.status, r.getheader('Content-Type', '-'), body))
    else:
        print('%d\t%s' % (r.status, body))

if __name__ == '__main__':
    main()
