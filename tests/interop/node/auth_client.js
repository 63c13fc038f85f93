'use strict';
// node-soap client of /soap/Auth; run by tests/interop/test_node_soap_client.py.
//
//   node auth_client.js <wsdl-url> <accessKey> <secretKey>
//
// Prints one JSON object on stdout: the ticket, WhoAmI's answer, and the faults of a replayed
// nonce and of a bad signature ({faultcode, detail} as node-soap parsed them).

const crypto = require('node:crypto');
const soap = require('soap');

const NAMESPACE = 'urn:lgsp-esb:auth:1';
const ALGORITHM = 'HMAC-SHA256';

function sign(secretKey, ...fields) {
  return crypto.createHmac('sha256', Buffer.from(secretKey, 'utf8')).update(fields.join('\n'), 'utf8').digest('base64');
}

// ISO 8601 with a numeric offset, seconds precision: 2026-11-21T02:30:00+00:00.
function timestamp() {
  return new Date().toISOString().replace(/\.\d{3}Z$/, '+00:00');
}

function nonce() {
  return crypto.randomBytes(8).toString('hex');
}

// The fault of a call expected to fail: faultcode and the parsed <tns:EsbFault> detail.
async function expectFault(call) {
  try {
    await call();
  } catch (error) {
    const fault = error.root && error.root.Envelope && error.root.Envelope.Body && error.root.Envelope.Body.Fault;
    if (!fault) {
      throw error;
    }
    return { faultcode: fault.faultcode, faultstring: fault.faultstring, detail: fault.detail || null };
  }
  return null;
}

async function main() {
  const [wsdl, accessKey, secretKey] = process.argv.slice(2);
  if (!secretKey) {
    console.error('usage: node auth_client.js <wsdl-url> <accessKey> <secretKey>');
    process.exit(2);
  }
  const client = await soap.createClientAsync(wsdl);
  const result = {};

  const [serverTime] = await client.GetServerTimeAsync({});
  result.serverTime = serverTime.GetServerTimeResult;

  const request = { accessKey, timestamp: timestamp(), nonce: nonce(), algorithm: ALGORITHM };
  request.signature = sign(secretKey, request.accessKey, request.timestamp, request.nonce, ALGORITHM, '');
  const [authenticated] = await client.AuthenticateAsync(request);
  const ticket = authenticated.AuthenticateResult;
  result.ticket = { ...ticket, sessionToken: undefined, tokenLength: ticket.sessionToken.length };

  // The header element must be {urn:lgsp-esb:auth:1}AuthHeader with a qualified sessionToken.
  client.addSoapHeader({ AuthHeader: { sessionToken: ticket.sessionToken } }, '', 'tns', NAMESPACE);
  const [who] = await client.WhoAmIAsync({});
  result.whoami = who.WhoAmIResult;
  result.whoamiRequest = client.lastRequest;
  client.clearSoapHeaders();

  result.replay = await expectFault(() => client.AuthenticateAsync(request));

  const bad = { accessKey, timestamp: timestamp(), nonce: nonce(), algorithm: ALGORITHM };
  bad.signature = sign(secretKey + 'x', bad.accessKey, bad.timestamp, bad.nonce, ALGORITHM, '');
  result.badSignature = await expectFault(() => client.AuthenticateAsync(bad));

  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  if (error && error.body) {
    console.error(error.body);
  }
  process.exit(1);
});
