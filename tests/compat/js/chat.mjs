// The API page's JavaScript example, unchanged but for base URL and key.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.PACKET_BASE_URL,
  apiKey: process.env.PACKET_KEY,
});

const response = await client.chat.completions.create({
  model: 'auto', // Uses your deployed model
  messages: [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Hello!' }
  ],
});

console.log(response.choices[0].message.content);
